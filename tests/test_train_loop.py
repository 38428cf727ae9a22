"""The training loop: per-token normalisation across accumulation, early stopping and the best step,
divergence, the methods, and what the summary reports."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import give_adapter_an_effect
from tunescope.config.run_config import DEFAULT_TEMPLATE, LoraConfig, TrainingConfig
from tunescope.core.errors import UserError
from tunescope.data.prompting import encode_dataset
from tunescope.data.synthetic import generate_problems
from tunescope.train.adapters import build_trainable, quantization_config_for
from tunescope.train.batching import collate, supervised_count
from tunescope.train.checkpoint import Checkpointer
from tunescope.train.loop import TrainingDiverged, accumulate_gradients, train
from tunescope.train.loss import SupervisedCausalLM

CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _examples(tokenizer, n=24, seed=0, rows=None):
    rows = rows or generate_problems(n, seed=seed)
    examples, _ = encode_dataset(rows, tokenizer, template=DEFAULT_TEMPLATE, use_chat_template=False,
                                 train_on_prompt=False, max_length=160, overflow="truncate")
    return examples


def _model(tiny_model_dir, dtype=torch.float32, **training):
    from transformers import AutoModelForCausalLM

    cfg = TrainingConfig(**{"lora": LoraConfig(dropout=0.0), **training})
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    return build_trainable(base, cfg), cfg


def _train(model, cfg, train_set, val_set=(), records=None, **kw):
    records = records if records is not None else []
    summary = train(model, train_set, list(val_set), cfg, seed=1, pad_id=2, device=CPU, dtype=torch.float32,
                    log=records.append, **kw)
    return summary, records


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_loss_is_a_per_token_mean_over_the_whole_step(tiny_model_dir, tiny_tokenizer):
    examples = _examples(tiny_tokenizer, 7)
    model, _ = _model(tiny_model_dir, dtype=torch.float64)
    give_adapter_an_effect(model)
    net = SupervisedCausalLM(model)
    step_tokens = sum(supervised_count(e) for e in examples)
    one = accumulate_gradients(net, [collate(examples, 2)], step_tokens, device=CPU)
    big = _grads(model)
    model.zero_grad()
    # The same examples as three micro-batches of unequal size (and so unequal token counts).
    parts = [examples[:1], examples[1:5], examples[5:]]
    three = accumulate_gradients(net, [collate(p, 2) for p in parts], step_tokens, device=CPU)
    for n, g in _grads(model).items():
        torch.testing.assert_close(g, big[n], rtol=1e-5, atol=1e-7, msg=n)
    assert three["tokens"] == one["tokens"] == step_tokens
    assert three["loss_sum"] == pytest.approx(one["loss_sum"], rel=1e-6)
    # Averaging per micro-batch instead would weight the one-example batch like the four-example one.
    per_batch = [accumulate_gradients(net, [collate(p, 2)], 1, device=CPU) for p in parts]
    naive = sum(b["loss_sum"] / b["tokens"] for b in per_batch) / 3
    assert abs(naive - one["loss_sum"] / step_tokens) > 1e-3


def test_splitting_batches_by_tokens_leaves_training_unchanged(tiny_model_dir, tiny_tokenizer):
    examples = _examples(tiny_tokenizer, 16)
    finals = []
    for cap in (None, 200):
        model, cfg = _model(tiny_model_dir, max_steps=3, batch_size=8, learning_rate=1e-2,
                            micro_batch_tokens=cap, early_stopping_patience=None)
        summary, records = _train(model, cfg, examples)
        finals.append(([r["loss"] for r in records if r["kind"] == "train"],
                       {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert finals[0][0] == pytest.approx(finals[1][0], rel=1e-5)
    for n, p in finals[0][1].items():
        # Adam turns float32 round-off in near-zero gradients into ±lr-sized moves; 1e-4 ≪ 3 steps × lr.
        torch.testing.assert_close(p, finals[1][1][n], rtol=1e-3, atol=1e-4)


def test_early_stopping_ships_the_best_step(tiny_model_dir, tiny_tokenizer):
    # Train on answers that end in "7", validate on answers that end in "36": validation gets worse.
    train_rows = [{"question": f"What is {i} plus {7 - i}?", "answer": "7 7 7 7\n#### 7"} for i in range(8)]
    val_rows = [{"question": "What is 12 times 3?", "answer": "36 36 36\n#### 36"}] * 2
    train_set = _examples(tiny_tokenizer, rows=train_rows)
    val_set = _examples(tiny_tokenizer, rows=val_rows)
    model, cfg = _model(tiny_model_dir, max_steps=20, batch_size=4, learning_rate=5e-2, eval_every=1,
                        early_stopping_patience=2, warmup_ratio=0.0)
    snapshots = {}

    def remember(state, total):
        snapshots[state.step] = {n: p.detach().clone() for n, p in model.named_parameters()
                                 if p.requires_grad}

    summary, records = _train(model, cfg, train_set, val_set, on_step=remember)
    vals = [r for r in records if r["kind"] == "val"]
    best = min(vals, key=lambda r: r["val_loss"])
    assert summary["stopped_early"] and summary["steps"] < 20
    assert summary["best_step"] == best["step"] and summary["best_val_loss"] == best["val_loss"]
    assert summary["steps"] == summary["best_step"] + 2  # patience: two evaluations without improvement
    for n, p in model.named_parameters():  # the model now holds the best step's weights, not the last
        if p.requires_grad:
            assert torch.equal(p, snapshots[summary["best_step"]][n])


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tiny_model_dir, tiny_tokenizer,
                                                                         tmp_path):
    examples = _examples(tiny_tokenizer, 16)
    model, cfg = _model(tiny_model_dir, max_steps=6, batch_size=4, checkpoint_every=2)
    poisoned = {"on": False}
    layer = model.get_base_model().model.layers[0]
    layer.register_forward_hook(lambda m, i, out: out * float("nan") if poisoned["on"] else out)

    def poison_after_step_3(state, total):
        poisoned["on"] = state.step == 3

    checkpointer = Checkpointer(tmp_path / "ckpt")
    with pytest.raises(TrainingDiverged, match="became nan at step 4") as err:
        _train(model, cfg, examples, checkpointer=checkpointer, on_step=poison_after_step_3)
    assert "step-00000002" in str(err.value)
    assert [p.name for p in checkpointer.all()] == ["step-00000002"]
    assert isinstance(err.value, UserError)


@pytest.mark.parametrize("method", ["dora", "full"])
def test_other_methods_train(tiny_model_dir, tiny_tokenizer, method):
    examples = _examples(tiny_tokenizer, 16)
    model, cfg = _model(tiny_model_dir, method=method, max_steps=4, batch_size=8, learning_rate=1e-2)
    summary, records = _train(model, cfg, examples)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    n_params = sum(p.numel() for p in model.parameters())
    assert (summary["trainable_params"] == n_params) == (method == "full")


def test_gradient_checkpointing_changes_memory_not_results(tiny_model_dir, tiny_tokenizer):
    examples = _examples(tiny_tokenizer, 8)
    losses = []
    for checkpointing in (False, True):
        model, cfg = _model(tiny_model_dir, max_steps=2, batch_size=4, learning_rate=1e-2,
                            gradient_checkpointing=checkpointing, lora=LoraConfig(dropout=0.1))
        _, records = _train(model, cfg, examples)
        losses.append([r["loss"] for r in records if r["kind"] == "train"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # same dropout masks when recomputing


def test_summary_reports_tokens_throughput_mfu_memory_and_cost(tiny_model_dir, tiny_tokenizer):
    examples = _examples(tiny_tokenizer, 12)
    val = _examples(tiny_tokenizer, 4, seed=5)
    model, cfg = _model(tiny_model_dir, max_steps=3, batch_size=4, eval_every=2, price_per_hour=2.0)
    summary, records = _train(model, cfg, examples, val)
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [1, 2, 3]
    assert [r["step"] for r in records if r["kind"] == "val"] == [2, 3]
    assert 0 < summary["tokens_supervised"] <= summary["tokens_nonpad"] <= summary["tokens_total"]
    assert summary["tokens_supervised"] == train_records[-1]["tokens_supervised"]
    assert all(0 <= r["token_accuracy"] <= 1 for r in train_records)
    assert summary["throughput_supervised_tps"] > 0 and summary["throughput_nonpad_tps"] > 0
    assert 0 < summary["mfu"] < 1 and summary["peak_flops"] > 1e8
    # MFU divides by the best peak of any dtype the device runs; the training dtype's own comes second.
    assert (summary["peak_flops"] == max(summary["peak_flops_by_dtype"].values())
            >= summary["peak_flops_own_dtype"])
    assert summary["peak_flops_by_dtype"][summary["peak_flops_dtype"]] == summary["peak_flops"]
    assert summary["mfu"] <= summary["mfu_own_dtype"] and summary["peak_flops_source"] == "measured"
    assert summary["peak_rss_mb"] > 100 and summary["cuda_max_allocated_mb"] is None
    assert summary["cost_usd"] == pytest.approx(summary["wall_s"] / 3600 * 2.0, rel=1e-3)
    assert summary["price_source"] == "user override" and summary["wall_s"] >= summary["train_s"]


def test_qlora_without_cuda_names_the_alternative():
    with pytest.raises(UserError, match="method: lora"):
        quantization_config_for(TrainingConfig(method="qlora"), CPU)


def test_out_of_memory_suggests_a_smaller_batch(tiny_model_dir, tiny_tokenizer, monkeypatch):
    from tunescope.train import loop

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "accumulate_gradients", out_of_memory)
    model, cfg = _model(tiny_model_dir, max_steps=2, batch_size=8, gradient_accumulation=2)
    with pytest.raises(UserError, match=r"training.batch_size=4 with training.gradient_accumulation=4"):
        _train(model, cfg, _examples(tiny_tokenizer, 16))
