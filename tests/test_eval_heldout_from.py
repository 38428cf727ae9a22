"""`tunescope eval --heldout-from RUN`: a run's held-out problems scored from outside the run.

The end-to-end test trains a tiny run that scores during training, exports its adapter and scores it
in a fresh process with `tunescope eval`: the responses must be the run's own tuned evaluation, item
for item. The table
below is the bad input: one line, exit code 2, before any model weights are read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthetic_run import build_run
from tunescope.config.loading import dump_config, load_config
from tunescope.recipes.inputs import prepare_data

ROOT = Path(__file__).resolve().parents[1]
RUN_SETTINGS = ("limit", "batch_size", "max_new_tokens", "num_fewshot", "samples", "temperature", "engine")
ROWS = [{"question": f"What is {a} plus {a + 1}?", "answer": f"{a} + {a + 1} = {2 * a + 1}\n#### {2 * a + 1}"}
        for a in range(1, 25)]


def cli(tmp: Path, *argv: str) -> subprocess.CompletedProcess:
    """`tunescope ARGV` in a process of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TUNESCOPE_REGISTRY": str(tmp / "registry.sqlite"), "TUNESCOPE_CACHE": str(tmp / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=tmp, timeout=600)
    assert proc.returncode == 0, (
        f"tunescope {' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def in_process(*argv: str) -> None:
    from tunescope.cli.commands import app

    result = CliRunner().invoke(app, list(argv))
    assert result.exit_code == 0 and result.exception is None, result.output


def test_the_exported_adapter_scored_in_a_fresh_process_gives_the_runs_responses(
        tmp_path, tiny_model_dir, monkeypatch, one_torch_thread):
    # The run scores during training (the folding of adapters runs mid-training) and uses eval settings
    # that differ from `tunescope eval`'s defaults (limit, max_new_tokens, batch size): the check below
    # gives none of them, so it sees the run's responses only if it takes them from the run.
    config = {
        "name": "scored", "output_dir": str(tmp_path / "runs"), "seed": 3,
        "model": {"name": str(tiny_model_dir), "dtype": "float32"},
        "data": {"source": "synthetic-math", "synthetic_size": 24},
        "training": {"max_steps": 4, "batch_size": 4, "eval_every": 2, "threads": 1, "learning_rate": 0.02,
                     "warmup_ratio": 0},
        "eval": {"tasks": ["heldout"], "heldout_size": 8, "limit": 6, "max_new_tokens": 10, "batch_size": 3,
                 "during_training": {"enabled": True, "limit": 4, "every": 2}},
        "report": {"embedding_backend": "tfidf", "bootstrap_resamples": 100},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # The run and the export in this process (the suite has their libraries loaded already); the
    # check in a process of its own, which knows nothing but the folders.
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))
    in_process("run", str(tmp_path / "run.yaml"))
    run = tmp_path / "runs" / "scored"
    assert (run / "eval" / "steps").is_dir()  # it did score during training
    in_process("export", str(run))
    shown = cli(tmp_path, "eval", "--model", str(tiny_model_dir), "--adapter",
                str(run / "export" / "adapter"), "--heldout-from", str(run), "--output",
                str(tmp_path / "check"))
    assert "heldout" in shown.stdout and "dtype: float32" in shown.stdout

    ours = read_jsonl(tmp_path / "check" / "heldout.jsonl")
    theirs = read_jsonl(run / "eval" / "tuned" / "heldout.jsonl")
    assert len(theirs) == 6
    assert ours == theirs  # prompts, responses, extracted answers, per-item scores, finish reasons
    results = json.loads((tmp_path / "check" / "results.json").read_text())
    run_results = json.loads((run / "eval" / "tuned" / "results.json").read_text())
    assert results["results"]["heldout"] == run_results["results"]["heldout"]
    assert results["tunescope"]["heldout_from"] == str(run)
    # The trained adapter is what makes the responses: the base model answers otherwise.
    base = read_jsonl(run / "eval" / "base" / "heldout.jsonl")
    assert [r["prompt"] for r in base] == [r["prompt"] for r in ours]
    assert [r["response"] for r in base] != [r["response"] for r in ours]


# ----------------------------------------------------------------- the run's settings, options in their place


def test_options_given_replace_the_runs_settings(tmp_path, tiny_model_dir):
    from tunescope.recipes.heldout import read_run_heldout

    run = fake_run(tmp_path, tiny_model_dir, "eval.samples=5", "eval.temperature=0.3", "eval.limit=2")
    made = read_run_heldout(run)
    assert made.dtype == "float32" and made.base_model() == str(tiny_model_dir)
    assert made.eval_settings({}) == {"limit": 2, "batch_size": 16, "max_new_tokens": None,
                                      "num_fewshot": None, "samples": 5, "temperature": 0.3, "engine": "auto"}
    assert made.eval_settings({"limit": 7})["limit"] == 7
    # The run's temperature belongs to its sample count; greedy scoring has none.
    assert made.eval_settings({"samples": 1})["temperature"] is None
    assert made.eval_settings({}, native=False)["engine"] == "auto"
    # The problems are the run's, asked in its prompt format.
    task = made.task()
    assert [d["question"] for d in task.docs] == [r["question"] for r in prepare_data(load_config(
        run / "config.yaml")).heldout_rows]
    assert task.spec.doc_to_text(task.docs[0]).startswith("Instruction: ")


# ----------------------------------------------------------------- bad input


def fake_run(tmp: Path, model: Path, *overrides: str, status: str = "complete") -> Path:
    """A finished run's folder as far as --heldout-from reads it: config, manifest, training data."""
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = load_config(None, ["name=r", f"model.name={model}", f"data.source={tmp / 'train.jsonl'}",
                             "data.val_fraction=0.25", "eval.heldout_size=3", "model.dtype=float32",
                             *overrides])
    run = tmp / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(cfg))
    manifest = {"name": "r", "status": status, "dtype": "float32", "data": prepare_data(cfg).info,
                "model": {"name": str(model), "source": str(model)}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def edit_manifest(run: Path, **fields) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, **fields}))


def recorded_item(run: Path, question: str) -> None:
    """The run's tuned evaluation recorded a held-out item with this question."""
    folder = run / "eval" / "tuned"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"results": {}}))
    (folder / "heldout.jsonl").write_text(json.dumps({"doc_id": 0, "question": question, "target": "x"})
                                          + "\n")


def other_problems_run(tmp: Path, model: Path) -> None:
    """A run folder whose evaluations scored problems other than those its config makes (the problems of
    tests/synthetic_run.py), with the manifest's data record true to its config."""
    run = build_run(tmp, "syn", model=str(model), n_mc=4, n_heldout=4, with_train_examples=False)
    edit_manifest(run, data=prepare_data(load_config(run / "config.yaml")).info)


@dataclass
class Case:
    id: str
    argv: list[str]
    words: tuple[str, ...]
    setup: Callable[[Path, Path], object] | None = None  # (case folder, tiny model folder)


RUN = "@TMP@/runs/r"
CASES = [
    Case("heldout-without-run", ["-m", "@MODEL@", "-t", "heldout"], ("--tasks", "--heldout-from RUN")),
    Case("heldout-among-others-without-run", ["-m", "@MODEL@", "-t", "gsm8k,heldout"],
         ("--tasks", "--heldout-from")),
    Case("no-tasks-no-run", ["-m", "@MODEL@"], ("--tasks", "name the tasks")),
    Case("no-model-no-run", ["-t", "gsm8k"], ("--model",)),
    Case("run-missing", ["--heldout-from", "@TMP@/nowhere"], ("nowhere", "run directory not found")),
    Case("run-empty-folder", ["--heldout-from", "@TMP@/empty"], ("not a tunescope run directory",),
         setup=lambda tmp, m: (tmp / "empty").mkdir()),
    Case("run-is-an-evaluation-folder", ["--heldout-from", "@TMP@/res"],
         ("--heldout-from", "evaluation folder"),
         setup=lambda tmp, m: (tmp / "res").mkdir() or (tmp / "res" / "results.json").write_text("{}")),
    Case("run-not-finished", ["--heldout-from", RUN], ("manifest.json", "not finished", "running"),
         setup=lambda tmp, m: fake_run(tmp, m, status="running")),
    Case("run-without-heldout-problems", ["--heldout-from", RUN], ("manifest.json", "no held-out problems"),
         setup=lambda tmp, m: edit_manifest(fake_run(tmp, m), data={"heldout": 0})),
    Case("run-tasks-without-heldout", ["--heldout-from", RUN, "-t", "gsm8k"], ("--tasks", "add 'heldout'"),
         setup=fake_run),
    Case("run-data-gone", ["--heldout-from", RUN],
         ("train.jsonl", "cannot make the held-out problems", "not found"),
         setup=lambda tmp, m: (fake_run(tmp, m), (tmp / "train.jsonl").unlink())),
    Case("run-data-changed", ["--heldout-from", RUN], ("manifest.json", "data hash"),
         setup=lambda tmp, m: (fake_run(tmp, m), (tmp / "train.jsonl").write_text(
             "".join(json.dumps(r) + "\n" for r in reversed(ROWS))))),
    Case("run-count-differs", ["--heldout-from", RUN], ("manifest.json", "3 held-out problems made now, 5"),
         setup=lambda tmp, m: edit_manifest(run := fake_run(tmp, m), data={
             **json.loads((run / "manifest.json").read_text())["data"], "heldout": 5})),
    Case("run-scored-other-problems", ["--heldout-from", RUN], ("tuned/heldout.jsonl:1", "differs"),
         setup=lambda tmp, m: recorded_item(fake_run(tmp, m), "What is 100 plus 101?")),
    # A run folder whose recorded evaluations were not made from its config's problems.
    Case("run-records-other-generator", ["--heldout-from", "@TMP@/syn"], ("base/heldout.jsonl:1", "differs"),
         setup=lambda tmp, m: other_problems_run(tmp, m)),
    Case("run-bad-limit", ["--heldout-from", RUN, "--limit", "0"], ("--limit", "at least 1"), setup=fake_run),
    Case("run-temperature-on-greedy-run", ["--heldout-from", RUN, "--temperature", "0.5"],
         ("--temperature", "samples > 1"), setup=fake_run),
]


def fill(arg: str, tmp: Path, model: Path) -> str:
    return arg.replace("@TMP@", str(tmp)).replace("@MODEL@", str(model))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_before_the_model_loads(case: Case, tmp_path, tiny_model_dir, monkeypatch):
    import transformers

    from tunescope.cli.commands import app

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the error was found")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))
    if case.setup is not None:
        case.setup(tmp_path, tiny_model_dir)
    result = CliRunner().invoke(app, ["eval", *[fill(a, tmp_path, tiny_model_dir) for a in case.argv]])
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert result.exit_code == 2, output
    assert [line for line in output.splitlines() if line.startswith("error:")] == [output.strip()], output
    for word in case.words:
        assert word in output, f"{word!r} not in:\n{output}"


def test_with_a_run_only_the_options_given_reach_the_recipe(monkeypatch, tmp_path):
    from tunescope.cli.commands import app
    from tunescope.recipes import evaluate_model as eval_recipe

    seen = []

    def record(model, tasks, **kw):
        seen.append((model, tasks, kw))
        raise SystemExit(0)

    monkeypatch.setattr(eval_recipe, "evaluate_model", record)
    CliRunner().invoke(app, ["eval", "--heldout-from", str(tmp_path), "--limit", "3", "--samples", "1"])
    CliRunner().invoke(app, ["eval", "-m", "m", "-t", "gsm8k"])
    (model, tasks, with_run), (_, _, without) = seen
    assert model is None and tasks is None and with_run["heldout_from"] == tmp_path
    assert with_run["dtype"] is None
    assert {k: with_run[k] for k in with_run if k in RUN_SETTINGS} == {"limit": "3", "samples": 1}
    # Without a run every option has its default, as in a run config.
    assert without["dtype"] == "auto" and without["limit"] == "50" and without["samples"] == 1
    assert set(RUN_SETTINGS) <= set(without) and without["heldout_from"] is None
