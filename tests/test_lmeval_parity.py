"""Item-by-item parity with lm-evaluation-harness, checked without lm-eval installed.

`benchmarks/make_parity_fixtures.py` ran lm-eval itself (its HF backend, float32 on the CPU, batch
size 1, its own `gsm8k`, `hellaswag` and `mmlu_high_school_computer_science` task definitions, the
last also 5-shot, with only the data source swapped for the files in `fixtures/lmeval_parity/data/`) on
the tiny model that `build_parity_model` below builds, and stored what it produced for every item: the
prompt, the generated text, the answer each filter extracted, the log-likelihood of every choice and
the per-item metrics, plus the aggregate results. Here the native engine runs the same tasks on the
same model and files, and must reproduce all of it.

The model is a 2-layer random Llama (`conftest.build_tiny_llama`, over `conftest.build_tokenizer`)
with its weights redrawn at a larger scale: at the default initialisation its greedy output is one
token repeated (`"::::..."`), which would make the comparison say little. Redrawn, it writes varied
text: half of its answers hold a number for flexible-extract to find, two stop at the end-of-text
token before the token limit, and no item's best choice is within 0.01 nats of the second best (the
seed is the first one at this scale that gives all of that; `test_the_fixture_is_not_vacuous` checks
it). Its context window is widened to 4096 positions so the 5-shot GSM8K prompts (about 2,200 tokens
under this small vocabulary) are run whole rather than truncated.

The fixtures record the torch version they were made with; the weights are drawn by torch's CPU
generator, so the test first checks that the rebuilt weights are the recorded ones (a fingerprint)
and says so plainly if a different torch draws different numbers. Regenerate with
`python benchmarks/make_parity_fixtures.py` (needs lm-eval and ../shared/data).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_llama, build_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lmeval_parity"

WEIGHT_STD = 0.2  # spreads the logits, so the top choices of a step differ by far more than float noise
WEIGHT_SEED = 4
CONTEXT_WINDOW = 4096
LOGLIKELIHOOD_TOLERANCE = 1e-4


def build_parity_model():
    """(model, tokenizer): the tiny Llama every parity fixture was produced with, float32, eval mode."""
    tokenizer = build_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.config.max_position_embeddings = CONTEXT_WINDOW  # rotary embeddings: no weights depend on it
    # A generator of its own, so the weights do not depend on what drew from torch's global one before.
    generator = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        for param in model.parameters():  # embeddings (tied to the output layer) and every projection
            if param.dim() == 2:
                param.normal_(0.0, WEIGHT_STD, generator=generator)
    return model.float().eval(), tokenizer


def save_parity_model(directory: Path) -> Path:
    """Write the parity model and tokenizer as a plain Hugging Face directory (what lm-eval loads)."""
    model, tokenizer = build_parity_model()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def fingerprint(model, tokenizer) -> dict[str, str]:
    """Hashes of the weights (float32 bytes, by parameter name) and of the tokenizer's vocabulary and
    merges."""
    weights = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    model_json = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = hashlib.sha256(json.dumps([model_json["vocab"], model_json["merges"]], sort_keys=True).encode())
    return {"weights_sha256": weights.hexdigest(), "vocab_sha256": vocab.hexdigest()}


def load_fixture() -> tuple[dict, dict[str, list[dict]]]:
    meta = json.loads((FIXTURES / "expected" / "lm_eval.json").read_text(encoding="utf-8"))
    records = {}
    for run in meta["runs"]:
        path = FIXTURES / "expected" / f"{run['name']}.jsonl"
        records[run["name"]] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return meta, records


# ------------------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_parity_model(tmp_path_factory.mktemp("parity-model"))


@pytest.fixture(scope="module")
def loaded(model_dir):
    """The model and tokenizer read back from disk, as lm-eval read them (`pretrained=<dir>`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def native(fixture, loaded, tmp_path_factory) -> dict[str, tuple[dict, list[dict]]]:
    """Each fixture run evaluated by the native engine: {name: (results, records)}."""
    from tunescope.evaluate import evaluate, load_task

    meta, _ = fixture
    model, tokenizer = loaded
    out: dict[str, tuple[dict, list[dict]]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared machine: a second thread mostly waits
    try:
        for run in meta["runs"]:
            task = load_task(run["task"], data_path=str(FIXTURES / run["data_path"]),
                             num_fewshot=run["num_fewshot"])
            out_dir = tmp_path_factory.mktemp(run["name"])
            # The default batch size: lm-eval ran one item at a time, and the engine's answers do not
            # depend on how many it runs together.
            results = evaluate(model, tokenizer, [task], limit=run["limit"],
                               max_new_tokens=run.get("max_gen_toks"), out_dir=out_dir)
            lines = (out_dir / f"{run['task']}.jsonl").read_text(encoding="utf-8").splitlines()
            out[run["name"]] = (results, [json.loads(line) for line in lines])
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_rebuilt_model_is_the_one_the_fixtures_were_made_with(fixture, loaded):
    meta, _ = fixture
    model, tokenizer = loaded
    assert build_tokenizer().get_vocab() == build_tokenizer().get_vocab()  # BPE training is deterministic
    rebuilt = fingerprint(model, tokenizer)
    assert rebuilt["vocab_sha256"] == meta["model"]["vocab_sha256"], (
        "the test tokenizer changed since the fixtures were made")
    assert rebuilt["weights_sha256"] == meta["model"]["weights_sha256"], (
        f"the rebuilt weights differ from the ones lm-eval ran on (fixtures made with torch "
        f"{meta['versions']['torch']}, this is torch {torch.__version__}); regenerate the fixtures "
        "with benchmarks/make_parity_fixtures.py if the model recipe changed on purpose")


def test_the_fixture_is_not_vacuous(fixture):
    """Equal outputs only mean something if the outputs vary: no empty or repeated answers, numbers
    for flexible-extract to find in some responses and not in others, right and wrong choices, and no
    prediction that a rounding error could flip."""
    meta, records = fixture
    accuracies = []
    for run in meta["runs"]:
        recs = records[run["name"]]
        assert len(recs) == run["limit"] and [r["doc_id"] for r in recs] == list(range(run["limit"]))
        if run["output_type"] == "generate_until":
            responses = [r["response"] for r in recs]
            assert all(r.strip() for r in responses) and len(set(responses)) == len(responses)
            found = [r["filtered"]["flexible-extract"] != "[invalid]" for r in recs]
            assert any(found) and not all(found)
        else:
            for r in recs:
                lls = sorted(r["loglikelihoods"])
                assert lls[-1] - lls[-2] > 100 * LOGLIKELIHOOD_TOLERANCE
            accuracies += [r["metrics"]["acc"] for r in recs]
    assert 0 < sum(accuracies) < len(accuracies)  # some right, some wrong


def _runs(output_type: str) -> list[str]:
    """The fixture's runs of one kind, for parametrize (none while the fixtures are being regenerated:
    the tests above then fail on the missing files)."""
    path = FIXTURES / "expected" / "lm_eval.json"
    if not path.is_file():
        return []
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    return [run["name"] for run in runs if run["output_type"] == output_type]


@pytest.mark.parametrize("name", _runs("generate_until"))
def test_generation_matches_lm_eval_item_by_item(name, fixture, native):
    _, expected = fixture
    _, records = native[name]
    assert len(records) == len(expected[name])
    for ours, ref in zip(records, expected[name], strict=True):
        where = f"{name} doc {ref['doc_id']}"
        assert ours["doc_id"] == ref["doc_id"]
        assert ours["prompt"] == ref["prompt"], where
        assert ours["target"] == ref["target"], where
        assert ours["response"] == ref["response"], where
        assert ours["filtered"] == ref["filtered"], where
        assert ours["metrics"] == ref["metrics"], where
    # Some answers end at the end-of-text token before max_gen_toks, so stopping is compared too, not
    # only the length cut-off.
    assert {r["finish_reason"] for r in records} > {"length"}


@pytest.mark.parametrize("name", _runs("multiple_choice"))
def test_loglikelihoods_match_lm_eval_item_by_item(name, fixture, native):
    _, expected = fixture
    _, records = native[name]
    assert len(records) == len(expected[name])
    for ours, ref in zip(records, expected[name], strict=True):
        where = f"{name} doc {ref['doc_id']}"
        assert ours["doc_id"] == ref["doc_id"]
        assert ours["prompt"] == ref["prompt"], where
        assert ours["target"] == ref["target"], where
        assert [f" {choice}" for choice in ours["choices"]] == ref["continuations"], where
        assert ours["loglikelihoods"] == pytest.approx(ref["loglikelihoods"],
                                                       abs=LOGLIKELIHOOD_TOLERANCE), where
        assert ours["is_greedy"] == ref["is_greedy"], where
        # The engine's records always carry acc and acc_norm; lm-eval logs the task's metrics only.
        assert {m: ours["metrics"][m] for m in ref["metrics"]} == ref["metrics"], where


@pytest.mark.parametrize("name", _runs("generate_until") + _runs("multiple_choice"))
def test_aggregate_results_match_lm_eval(name, fixture, native):
    meta, _ = fixture
    run = next(r for r in meta["runs"] if r["name"] == name)
    results, _ = native[name]
    task = run["task"]
    ours, ref = results["results"][task], run["results"]
    # "metric,filter" and "metric_stderr,filter" entries, and the alias the table shows.
    compared = sorted(key for key in ref if "," in key)
    assert compared and sorted(key for key in ours if "," in key) == compared
    for key in compared:
        assert math.isclose(ours[key], ref[key], rel_tol=1e-12, abs_tol=1e-12), f"{name} {key}"
    assert ours["alias"] == ref["alias"]
    assert results["n-shot"][task] == run["n-shot"]
    assert results["n-samples"][task] == run["n-samples"]
    assert results["versions"][task] == run["version"]
    assert results["higher_is_better"][task] == run["higher_is_better"]
