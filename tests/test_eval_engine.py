"""The engine on a tiny random Llama: batch-size invariance, fast paths, truncation, results layout."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch

from tunescope.evaluate import evaluate, format_results_table, load_task, task_from_docs
from tunescope.evaluate.generation import Generator, GenRequest
from tunescope.evaluate.loglikelihood import ChoiceGroup, LoglikelihoodScorer
from tunescope.evaluate.tokenization import Encoder

CORPUS = [
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "Answer: Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    "Instruction: Add 12 and 30.\nResponse: 12 + 30 = 42\n#### 42",
    "The following are multiple choice questions (with answers) about anatomy.",
    "A man is sitting on a roof. He starts pulling up roofing on a roof.",
    "A. one B. two C. three D. four Answer: The answer is 5, $1,234.00 and -7.",
]


@lru_cache(maxsize=1)
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_model(max_positions: int = 512, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=max_positions,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    # A larger init than the default spreads the logits, so argmax is not decided by float noise.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


def gen_requests(tok, n: int = 9, max_new: int = 24) -> list[GenRequest]:
    enc = Encoder(tok)
    prompts = [f"Question: Tom has {i} apples and buys {i + 2} more. How many?\nAnswer:" + " x" * (i % 4)
               for i in range(n)]
    # Different lengths make rows finish at different steps, so slots are refilled and compacted.
    return [GenRequest(enc.encode_prompt(p), ["Question:", "####"], max_new - 3 * (i % 5))
            for i, p in enumerate(prompts)]


def test_greedy_answers_do_not_depend_on_batch_size():
    tok, model = tiny_tokenizer(), tiny_model()
    reqs = gen_requests(tok)
    outs = {bs: [r.text for r in Generator(model, tok, batch_size=bs).run(reqs)] for bs in (1, 3, 8)}
    assert outs[1] == outs[3] == outs[8]
    # And they are what HF's own greedy generate produces for each prompt alone (cut at the stops).
    for req, text in zip(reqs, outs[1], strict=True):
        ids = torch.tensor([req.prompt_ids])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=req.max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        ref = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in req.until:
            ref = ref.split(stop)[0]
        assert text == ref


def test_sampling_is_seeded_and_batch_independent():
    tok, model = tiny_tokenizer(), tiny_model()
    reqs = gen_requests(tok, n=4, max_new=12)
    for i, r in enumerate(reqs):
        r.do_sample, r.temperature, r.seed = True, 1.0, 100 + i
    a = [r.text for r in Generator(model, tok, batch_size=1).run(reqs)]
    b = [r.text for r in Generator(model, tok, batch_size=4).run(reqs)]
    assert a == b


def test_single_token_fast_path_equals_generic_path():
    tok, model = tiny_tokenizer(), tiny_model()
    enc = Encoder(tok)
    scorer = LoglikelihoodScorer(model, batch_size=4, max_length=512)
    # One long context, so the short documents are packed several to a row behind it.
    base = ["Question: Tom has 3 apples. Answer:", "A man is sitting on a roof. He", "The answer is",
            "Tom has 3 apples and buys 4 more. " * 6 + "How many?", "He", "Add 12 and 30."]
    shared = "The following are multiple choice questions (with answers) about anatomy.\n\n"
    # Without and with a long common prefix (which the fast path runs once for all documents).
    for contexts, choices in [(ctxs, ch) for ctxs in (base, [shared + c for c in base])
                              for ch in ([" A", " B", " C", " D"],
                                         [" roofing.", " is on a roof", " 7 apples and more"])]:
        groups = []
        for ctx in contexts:
            pairs = [enc.encode_pair(ctx, c) for c in choices]
            groups.append(ChoiceGroup(pairs[0][0], [c for _, c in pairs]))
        packed, truncated = scorer.score_groups(groups)
        assert truncated == 0
        for g, scores in zip(groups, packed, strict=True):
            plain = scorer.score_plain([(g.context, c) for c in g.continuations])
            for fast, ref in zip(scores, plain, strict=True):
                assert fast.loglikelihood == pytest.approx(ref.loglikelihood, abs=1e-4)
                assert fast.is_greedy == ref.is_greedy
    assert scorer._shared_prefix(groups)[0]  # the second half did use a shared prefix
    lengths = [scorer._packed_length(g) for g in groups]
    order = sorted(range(len(groups)), key=lambda i: -lengths[i])
    batches = scorer._flat_batches(order, sorted(lengths, reverse=True))
    assert len(batches) < len(groups) and sum(len(b) for b in batches) == len(groups)


def test_encode_pair_moves_trailing_space():
    enc = Encoder(tiny_tokenizer())
    ctx, cont = enc.encode_pair("Answer: ", "42")
    assert ctx == enc.encode("Answer:") and ctx + cont == enc.encode("Answer: 42")


def _mc_file(tmp_path, n=3):
    path = tmp_path / "anatomy_test.csv"
    path.write_text("".join(f"Question {i} about a roof?,one,two,three,four,{'ABCD'[i % 4]}\n"
                            for i in range(n)))
    return path


def test_truncation_is_counted(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_model(max_positions=40)
    long_q = "Question: " + "Tom has 3 apples and buys 4 more. " * 10 + "How many?"
    docs = [{"question": long_q, "answer": "#### 7"}, {"question": "Add 1.", "answer": "#### 1"}]
    task = task_from_docs("heldout", docs, "Instruction: {question}\nResponse: {answer}")
    res = evaluate(model, tok, [task], batch_size=2, max_new_tokens=8)
    assert res["tunescope"]["tasks"]["heldout"]["truncated"] == 1
    mc = load_task("mmlu_anatomy", data_path=str(_mc_file(tmp_path)))
    res = evaluate(model, tok, [mc], batch_size=2)
    assert res["tunescope"]["tasks"]["mmlu_anatomy"]["truncated"] == 3
    assert res["n-samples"]["mmlu_anatomy"] == {"original": 3, "effective": 3}


def test_results_layout_records_and_table(tmp_path):
    tok, model = tiny_tokenizer(), tiny_model()
    docs = [{"question": f"Add {i} and {i}.", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(3)]
    gen = task_from_docs("heldout", docs, "Instruction: {question}\nResponse: {answer}")
    mc = load_task("mmlu_anatomy", data_path=str(_mc_file(tmp_path)))
    seen = []
    out = tmp_path / "eval"
    res = evaluate(model, tok, [gen, mc], limit=10, batch_size=2, max_new_tokens=6, out_dir=out,
                   progress=lambda name, done, total: seen.append((name, done, total)))
    r = res["results"]
    assert set(r["heldout"]) == {"alias", "exact_match,strict-match", "exact_match_stderr,strict-match",
                                 "exact_match,flexible-extract", "exact_match_stderr,flexible-extract"}
    assert set(r["mmlu_anatomy"]) == {"alias", "acc,none", "acc_stderr,none"}
    assert r["mmlu_anatomy"]["alias"] == "anatomy"
    assert res["n-shot"] == {"heldout": 0, "mmlu_anatomy": 0}
    assert res["n-samples"]["heldout"] == {"original": 3, "effective": 3}
    assert res["versions"]["mmlu_anatomy"] == 1.0 and "mmlu_anatomy" in res["configs"]
    assert res["tunescope"]["tasks"]["heldout"]["limit_exceeds_split"] is True
    assert ("heldout", 3, 3) in seen and ("mmlu_anatomy", 3, 3) in seen
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"] == json.loads(json.dumps(r))
    gen_recs = [json.loads(x) for x in (out / "heldout.jsonl").read_text().splitlines()]
    assert [g["doc_id"] for g in gen_recs] == [0, 1, 2]
    rec = gen_recs[0]
    assert {"doc_id", "prompt_hash", "prompt", "question", "target", "response", "filtered",
            "metrics"} <= set(rec)
    assert set(rec["filtered"]) == {"strict-match", "flexible-extract"}
    assert set(rec["metrics"]) == {"exact_match,strict-match", "exact_match,flexible-extract"}
    import hashlib

    assert rec["prompt_hash"] == hashlib.sha256(rec["prompt"].encode()).hexdigest()
    mc_rec = json.loads((out / "mmlu_anatomy.jsonl").read_text().splitlines()[0])
    assert {"doc_id", "prompt_hash", "target", "loglikelihoods", "char_lengths", "metrics"} <= set(mc_rec)
    assert set(mc_rec["metrics"]) == {"acc", "acc_norm"} and mc_rec["char_lengths"] == [1, 1, 1, 1]
    table = format_results_table(res)
    lines = table.splitlines()
    assert lines[0].replace(" ", "") == "|Tasks|Version|Filter|n-shot|Metric||Value||Stderr|"
    assert any("strict-match" in x and "exact_match" in x and "±" in x for x in lines)
    assert any(x.startswith("|anatomy") for x in lines)


def test_self_consistency_reports_maj_at_k():
    tok, model = tiny_tokenizer(), tiny_model()
    docs = [{"question": "Add 1 and 2.", "answer": "#### 3"}]
    task = task_from_docs("heldout", docs, "Instruction: {question}\nResponse: {answer}", samples=3)
    res = evaluate(model, tok, [task], batch_size=4, max_new_tokens=5)
    assert "exact_match,maj@3" in res["results"]["heldout"]
    assert res["configs"]["heldout"]["generation_kwargs"]["do_sample"] is True


def test_bad_batch_size_and_backend():
    from tunescope.core.errors import UserError

    tok, model = tiny_tokenizer(), tiny_model()
    task = task_from_docs("heldout", [{"question": "q", "answer": "#### 1"}], "Q: {question}\nA: {answer}")
    with pytest.raises(UserError):
        evaluate(model, tok, [task], batch_size=0)
    with pytest.raises(UserError, match="unknown evaluation backend"):
        evaluate(model, tok, [task], backend="nope")
    res = evaluate(model, tok, [task], batch_size="auto", max_new_tokens=3)
    assert res["tunescope"]["tasks"]["heldout"]["batch_size"] >= 1


@pytest.mark.slow
def test_same_answers_and_scores_as_lm_eval(tmp_path):
    """backend="lm-eval" runs lm-evaluation-harness on the same model and documents: the native engine
    must give the same responses, filtered answers and choices, and log-likelihoods within 1e-4."""
    pytest.importorskip("lm_eval")
    tok, model = tiny_tokenizer(), tiny_model()
    docs = [{"question": f"Tom has {i} apples and buys {i + 3} more. How many?",
             "answer": f"#### {2 * i + 3}"} for i in range(5)]
    gen = task_from_docs("heldout", docs, "Question: {question}\nAnswer: {answer}")
    mc = load_task("mmlu_anatomy", data_path=str(_mc_file(tmp_path, n=5)))
    hs = tmp_path / "hs.jsonl"
    hs.write_text("".join(json.dumps({"activity_label": "Roof", "ctx": f"A man is on a roof {i}. he",
                                      "endings": ["starts pulling up roofing.", "is on a roof",
                                                  "eats 7 apples", "says the answer is 5"],
                                      "label": i % 4}) + "\n"
                          for i in range(4)))
    hella = load_task("hellaswag", data_path=str(hs))
    native, ref = tmp_path / "native", tmp_path / "ref"
    evaluate(model, tok, [gen, mc, hella], batch_size=3, max_new_tokens=16, out_dir=native)
    evaluate(model, tok, [gen, mc, hella], batch_size=3, max_new_tokens=16, out_dir=ref, backend="lm-eval")

    def load(d, name):
        return [json.loads(x) for x in (d / f"{name}.jsonl").read_text().splitlines()]

    for a, b in zip(load(native, "heldout"), load(ref, "heldout"), strict=True):
        assert a["prompt_hash"] == b["prompt_hash"]
        assert a["response"] == b["response"]
        assert a["filtered"] == b["filtered"] and a["metrics"] == b["metrics"]
    for name in ("mmlu_anatomy", "hellaswag"):
        for a, b in zip(load(native, name), load(ref, name), strict=True):
            assert a["prompt_hash"] == b["prompt_hash"]
            assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)
            for m in b["metrics"]:
                assert a["metrics"][m] == b["metrics"][m]


def test_results_name_the_model_by_the_folder_it_was_loaded_from(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from tunescope.data.synthetic import generate_problems
    from tunescope.evaluate.runner import evaluate_native

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert model.config.name_or_path == str(tiny_model_dir)  # transformers' public record of the source
    task = task_from_docs("heldout", generate_problems(1, seed=2), "Question: {question}\nAnswer:")
    results = evaluate_native(model, tiny_tokenizer, [task], batch_size=1, max_new_tokens=2)
    assert results["config"]["model"] == str(tiny_model_dir)
