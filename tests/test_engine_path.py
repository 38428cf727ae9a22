"""Which path evaluates a model (native engine or plain transformers), and the plain path's answers.

Tiny random models built from transformers configs: the decision for every verified family and for
the features that must fall back; the plain transformers path against the native engine on a Llama
(same responses, finish reasons and log-likelihoods) and against `model.generate` on a MoE model.
"""

from __future__ import annotations

import json

import pytest
import torch

from test_eval_engine import _mc_file, gen_requests, tiny_model, tiny_tokenizer
from tunescope.core.errors import UserError
from tunescope.evaluate import evaluate, load_task, task_from_docs
from tunescope.evaluate.enginepath import engine_path, resolve_engine
from tunescope.evaluate.generation import Generator, GenRequest
from tunescope.evaluate.plain import generate_with_transformers


def _common(tok) -> dict:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _build(cfg, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    # A larger init than the default spreads the logits, so argmax is not decided by float noise.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


def _config(name: str, tok, **extra):
    import transformers as tf

    c = {**_common(tok), **extra}
    if name == "gpt_neox":
        c.pop("num_key_value_heads")
    if name in ("gemma2", "gemma3_text"):
        c.update(head_dim=16, query_pre_attn_scalar=16, sliding_window=8)
    if name in ("mixtral", "qwen2_moe"):
        c.update(num_experts_per_tok=2)
        c.update({"num_local_experts" if name == "mixtral" else "num_experts": 4})
    classes = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config",
               "qwen3": "Qwen3Config", "phi": "PhiConfig", "phi3": "Phi3Config", "gemma2": "Gemma2Config",
               "gemma3_text": "Gemma3TextConfig", "gpt_neox": "GPTNeoXConfig", "mixtral": "MixtralConfig",
               "qwen2_moe": "Qwen2MoeConfig", "gpt2": "GPT2Config", "opt": "OPTConfig"}
    if name == "gpt2":
        c = dict(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=512)
    if name == "opt":
        c = dict(vocab_size=len(tok), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=512, word_embed_proj_dim=64)
    return getattr(tf, classes[name])(**c)  # only the family's own module is imported


VERIFIED = ["llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma2", "gemma3_text", "gpt_neox"]


@pytest.mark.parametrize("name", VERIFIED)
def test_verified_families_take_the_native_path(name):
    assert engine_path(_build(_config(name, tiny_tokenizer()))) == ("native", f"{name} verified")


def test_gemma3_composite_text_model_takes_the_native_path():
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    tok = tiny_tokenizer()
    text = {**_common(tok), "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8}
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                       image_token_index=len(tok) - 1, boi_token_index=len(tok) - 2,
                       eoi_token_index=len(tok) - 3)
    path, reason = engine_path(Gemma3ForConditionalGeneration(cfg))
    assert path == "native" and "gemma3_text" in reason


@pytest.mark.parametrize("name, expected", [
    ("mixtral", "mixture-of-experts"),
    ("qwen2_moe", "mixture-of-experts"),
    ("gpt2", "model type 'gpt2' is not verified"),
    ("opt", "model type 'opt' is not verified"),
])
def test_other_models_fall_back_to_transformers(name, expected):
    path, reason = engine_path(_build(_config(name, tiny_tokenizer())))
    assert path == "transformers" and expected in reason


@pytest.mark.parametrize("extra, expected", [
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rotary scaling 'dynamic'"),
    ({"attention_chunk_size": 16}, "chunked attention"),
    ({"add_cross_attention": True}, "cross-attention"),
    ({"alibi": True}, "ALiBi"),
    ({"use_bidirectional_attention": True}, "bidirectional attention"),
])
def test_unsupported_features_of_a_verified_family_fall_back(extra, expected):
    path, reason = engine_path(_build(_config("llama", tiny_tokenizer(), **extra)))
    assert path == "transformers" and expected in reason


def test_attention_outside_the_interface_and_outside_transformers_fall_back():
    from transformers import LlamaForCausalLM

    class OwnAttention(LlamaForCausalLM):
        _supports_attention_backend = False

    class OwnCode(LlamaForCausalLM):  # as trust_remote_code loads it: a class from outside transformers
        pass

    cfg = _config("llama", tiny_tokenizer())
    assert "attention interface" in engine_path(OwnAttention(cfg))[1]
    path, reason = engine_path(OwnCode(cfg))
    assert path == "transformers" and "outside transformers" in reason


def test_a_peft_wrapper_is_judged_by_its_base_model():
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(tiny_model(), LoraConfig(r=2, target_modules=["q_proj"]))
    assert engine_path(wrapped) == ("native", "llama verified")


def test_forcing_a_path_and_bad_settings():
    model = tiny_model()
    path, reason = resolve_engine(model, "transformers")
    assert path == "transformers" and "forced" in reason and "auto would pick native" in reason
    assert resolve_engine(model, "auto") == ("native", "llama verified")
    # Forcing native on a model it is not verified on is allowed, and said.
    path, reason = resolve_engine(_build(_config("mixtral", tiny_tokenizer())), "native")
    assert path == "native" and "not verified: mixture-of-experts" in reason
    with pytest.raises(UserError,
                       match=r"^engine: unknown engine 'bogus' \(known: auto, native, transformers\)"):
        resolve_engine(model, "bogus")
    task = task_from_docs("heldout", [{"question": "q", "answer": "#### 1"}], "Q: {question}\nA: {answer}")
    with pytest.raises(UserError, match="^engine: unknown engine"):
        evaluate(model, tiny_tokenizer(), [task], engine="bogus")
    with pytest.raises(UserError, match="^engine: applies only to backend 'native'"):
        evaluate(model, tiny_tokenizer(), [task], engine="transformers", backend="lm-eval")


def test_forced_transformers_path_gives_the_native_answers_and_scores(tmp_path):
    torch.set_num_threads(1)
    tok, model = tiny_tokenizer(), tiny_model()
    docs = [{"question": f"Tom has {i} apples and buys {i + 3} more. How many?",
             "answer": f"#### {2 * i + 3}"} for i in range(4)]
    gen = task_from_docs("heldout", docs, "Question: {question}\nAnswer: {answer}")
    mc = load_task("mmlu_anatomy", data_path=str(_mc_file(tmp_path, n=4)))
    for engine in ("native", "transformers"):
        evaluate(model, tok, [gen, mc], batch_size=3, max_new_tokens=12, out_dir=tmp_path / engine,
                 engine=engine)

    def load(engine, name):
        return [json.loads(x) for x in (tmp_path / engine / f"{name}.jsonl").read_text().splitlines()]

    for a, b in zip(load("native", "heldout"), load("transformers", "heldout"), strict=True):
        assert ((a["response"], a["finish_reason"], a["filtered"])
                == (b["response"], b["finish_reason"], b["filtered"]))
    for a, b in zip(load("native", "mmlu_anatomy"), load("transformers", "mmlu_anatomy"), strict=True):
        assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)
        assert a["metrics"] == b["metrics"]
    saved = json.loads((tmp_path / "transformers" / "results.json").read_text())["tunescope"]
    assert saved["engine"] == "transformers"
    for name in ("heldout", "mmlu_anatomy"):
        assert saved["tasks"][name]["engine_path"] == "transformers"
        assert "forced by the engine setting" in saved["tasks"][name]["engine_reason"]
    native = json.loads((tmp_path / "native" / "results.json").read_text())["tunescope"]["tasks"]["heldout"]
    assert native["engine_path"] == "native"


def test_plain_generation_stops_as_the_native_engine_does():
    """Stop strings cut the text and end the row ("stop"); an EOS token ends it without text ("eos")."""
    torch.set_num_threads(1)
    tok, model = tiny_tokenizer(), tiny_model()
    reqs = gen_requests(tok, n=3, max_new=12)
    free = Generator(model, tok, batch_size=3).run(
        [GenRequest(r.prompt_ids, [], r.max_new_tokens) for r in reqs])
    for req, res in zip(reqs, free, strict=True):
        req.until = [res.text[4:6]]  # a stop string the model does produce, after a few tokens
    native = Generator(model, tok, batch_size=3).run(reqs)
    plain = generate_with_transformers(model, tok, reqs)
    assert [(r.text, r.finish_reason) for r in native] == [(r.text, r.finish_reason) for r in plain]
    assert {r.finish_reason for r in plain} == {"stop"}
    # An EOS id the model emits on its third token.
    model.generation_config.eos_token_id = [tok.eos_token_id, free[0].token_ids[2]]
    req = GenRequest(reqs[0].prompt_ids, [], 12)
    (a,), (b,) = Generator(model, tok, batch_size=1).run([req]), generate_with_transformers(model, tok, [req])
    assert (a.text, a.token_ids, a.finish_reason) == (b.text, b.token_ids, "eos")


def test_moe_model_runs_through_transformers_and_matches_generate_alone(tmp_path):
    torch.set_num_threads(1)
    tok = tiny_tokenizer()
    model = _build(_config("mixtral", tok))
    reqs = gen_requests(tok, n=3, max_new=10)
    plain = generate_with_transformers(model, tok, reqs)
    for req, res in zip(reqs, plain, strict=True):
        ids = torch.tensor([req.prompt_ids])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=req.max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        ref = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in req.until:
            ref = ref.split(stop)[0]
        assert res.text == ref
    # Sampling is seeded per request: the same seed gives the same answer, and the caller's RNG is untouched.
    for r in reqs:
        r.do_sample, r.temperature, r.top_p, r.top_k, r.seed = True, 1.0, 0.9, 20, 7
    state = torch.random.get_rng_state()
    first = [r.text for r in generate_with_transformers(model, tok, reqs[:1] * 2)]
    assert first[0] == first[1] and torch.equal(state, torch.random.get_rng_state())
    # Through evaluate(): "auto" picks transformers and results.json says why.
    docs = [{"question": "Add 1 and 2.", "answer": "#### 3"}]
    gen = task_from_docs("heldout", docs, "Question: {question}\nAnswer: {answer}")
    res = evaluate(model, tok, [gen], max_new_tokens=4, out_dir=tmp_path)
    info = json.loads((tmp_path / "results.json").read_text())["tunescope"]["tasks"]["heldout"]
    assert info["engine_path"] == "transformers" and "mixture-of-experts" in info["engine_reason"]
    assert res["tunescope"]["tasks"]["heldout"]["batch_size"] == 1


def test_run_config_engine_key_reaches_the_evaluation(tmp_path):
    from tunescope.config.loading import load_config
    from tunescope.recipes.run import ProgressSink, run_evaluation

    assert load_config(None, []).eval.engine == "auto"
    with pytest.raises(UserError, match=r"key 'eval\.engine'") as e:
        load_config(None, ["eval.engine=bogus"])
    assert "\n" not in str(e.value)

    class Messages(ProgressSink):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    cfg = load_config(None, ["eval.engine=transformers", "eval.max_new_tokens=4", "eval.limit=2"])
    task = task_from_docs("heldout", [{"question": "Add 1 and 2.", "answer": "#### 3"}],
                          "Q: {question}\nA: {answer}")
    sink = Messages()
    res = run_evaluation(tiny_model(), tiny_tokenizer(), [task], [], cfg, tmp_path, sink, "base")
    assert res["tunescope"]["tasks"]["heldout"]["engine_path"] == "transformers"
    assert sink.lines == ["base engine: transformers (forced by the engine setting; auto would pick native: "
                              "llama verified)"]


def test_cli_rejects_an_unknown_engine(monkeypatch, capsys):
    from tunescope.cli import commands as cli

    monkeypatch.setattr("sys.argv",
                        ["tunescope", "eval", "--model", "x/y", "--tasks", "gsm8k", "--engine", "bogus"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: --engine: unknown engine 'bogus' (known: auto, native, transformers)"]
