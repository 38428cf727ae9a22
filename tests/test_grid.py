"""`tunescope grid`: expansion and bad input, the base evaluation shared per model, resuming, one
failing run, and a 2 × 2 × 2-seed grid of tiny models run to grid.html in this process."""

from __future__ import annotations

import json
import sqlite3

import pytest

from grid_fixtures import second_tiny_model, write_grid
from tunescope.core.errors import UserError
from tunescope.grid.scheduler import run_grid
from tunescope.grid.spec import load_grid
from tunescope.recipes import compare as compare_recipe
from tunescope.recipes import run as pipeline
from tunescope.store import registry as run_registry


def test_axes_expand_into_named_runs(tmp_path, tiny_model_dir):
    path = write_grid(tmp_path, {"model.name": [str(tiny_model_dir)], "training.method": ["lora", "dora"],
                                 "data.limit": [12, 24]}, seeds=[1, 2, 3])
    g = load_grid(path)
    assert len(g.cells) == 4 and len(g.runs) == 12
    assert g.folder == tmp_path / "out" / "g"
    run = g.runs[0]
    assert run.name == f"{tiny_model_dir.name}_lora_12-s1" and run.config.seed == 1
    assert run.config.output_dir == str(tmp_path / "out" / "g") and run.config.training.method == "lora"
    # Every cell and seed trains on the same split and asks the same held-out problems.
    assert {r.config.data_seed for r in g.runs} == {1234}


@pytest.mark.parametrize("axes, message", [
    ({"training.methd": ["lora"]}, "no key 'training.methd'"),
    ({"training.method": []}, "at least one value"),
    ({"seed": [1, 2]}, "set by the grid itself"),
    ({"training.method": ["lora", "adapterz"]}, "training.method"),
    ({"model.name": ["/a/tiny", "/b/tiny"]}, "both resolve to the run name"),
])
def test_bad_grids_are_one_line_errors_and_write_nothing(tmp_path, axes, message):
    path = write_grid(tmp_path, axes)
    with pytest.raises(UserError, match=message) as err:
        load_grid(path)
    assert err.value.where and str(path) in err.value.where and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_empty_axes_mapping_is_refused(tmp_path):
    with pytest.raises(UserError, match="at least one axis"):
        load_grid(write_grid(tmp_path, {}))


def test_dry_run_prints_runs_and_estimate(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from tunescope.cli.commands import app

    path = write_grid(tmp_path, {"training.method": ["lora", "dora"]},
                      base_extra={"model.name": str(tiny_model_dir)},
                      estimate={"train_tokens_per_s": 100.0, "eval_items_per_s": 1.0})
    res = CliRunner().invoke(app, ["grid", str(path), "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "lora-s1" in res.output and "dora-s2" in res.output and "estimated total" in res.output
    assert ("grid file estimate.train_tokens_per_s" in res.output
            and "tokens per example: tokenized" in res.output)
    assert not (tmp_path / "out").exists()


def test_estimate_counts_encoded_tokens_validation_passes_and_items_scored_during_training(
        tmp_path, tiny_model_dir):
    from tunescope.grid.cost import estimate
    from tunescope.models.loading import prepare_tokenizer
    from tunescope.recipes.inputs import encode_data, prepare_data

    path = write_grid(tmp_path, {"training.method": ["lora"]}, seeds=[1],
                      base_extra={"model.name": str(tiny_model_dir), "training.max_steps": 7,
                                  "training.eval_every": 3, "eval.during_training.enabled": True,
                                  "eval.during_training.limit": 5, "eval.during_training.every": 2},
                      estimate={"train_tokens_per_s": 100.0, "eval_items_per_s": 2.0})
    g = load_grid(path)
    (row,) = estimate(g)["runs"]
    cfg = g.runs[0].config
    enc = encode_data(cfg, prepare_tokenizer(str(tiny_model_dir)), prepare_data(cfg))
    train_lengths = [len(e.input_ids) for e in enc.train_set]
    val_tokens = sum(len(e.input_ids) for e in enc.val_set)
    assert row["tokens_per_example_from"] == "tokenized"
    assert row["tokens_per_example"] == pytest.approx(sum(train_lengths) / len(train_lengths))
    assert row["steps"] == 7 and row["train_tokens"] == pytest.approx(7 * 4 * row["tokens_per_example"])
    assert row["val_passes"] == 3 and row["val_tokens"] == val_tokens  # steps 3, 6 and the last, 7
    assert row["during_training_items"] == 5 * 5  # steps 0, 2, 4, 6 and 7
    assert row["train_s"] == pytest.approx((row["train_tokens"] + 3 * val_tokens / 3) / 100.0)
    assert row["eval_s"] == pytest.approx((6 + 6 + 25) / 2.0)  # tuned, base, during training


def test_grid_2x2x2_runs_to_report_sharing_each_base_eval(tmp_path, tiny_model_dir, tiny_tokenizer,
                                                          one_torch_thread, monkeypatch):
    model_b = second_tiny_model(tmp_path, tiny_tokenizer)
    path = write_grid(tmp_path, {"model.name": [str(tiny_model_dir), str(model_b)],
                                 "training.method": ["lora", "dora"]}, seeds=[1, 2])
    g = load_grid(path)
    evaluations = []
    real = pipeline.run_evaluation
    monkeypatch.setattr(pipeline, "run_evaluation",
                        lambda *a, **k: evaluations.append(a[-1]) or real(*a, **k))
    result = run_grid(g)
    assert all(s["status"] == "complete" for s in result["statuses"].values()), result["statuses"]
    assert evaluations.count("base") == 2 and evaluations.count("tuned") == 8  # each base model once

    data = json.loads((g.folder / "grid.json").read_text())
    reused = {r["run"]: r["base_eval_reused"] for r in data["runs"]}
    assert sum(reused.values()) == 6 and sum(v is False for v in reused.values()) == 2
    row = next(r for r in data["rows"]
               if r["task"] == "heldout" and r["metric"] == "exact_match,strict-match")
    assert (len(row["cells"]) == 4 and all(v["k"] == 2 for v in row["cells"].values())
            and len(row["bases"]) == 2)
    kinds = {c["why"].split(":")[0] for c in data["comparisons"]}
    assert kinds == {"against its base model", "model.name", "training.method"}
    assert all(c["test"]["available"] and c["test"]["n_items"] == 12 for c in data["comparisons"])
    assert len(data["axis_plots"]) == 2 and data["conclusions"]
    html = (g.folder / "grid.html").read_text()
    assert "Content-Security-Policy" in html and "data:image/png;base64," in html and "<script" not in html
    assert "Cochran–Mantel–Haenszel" in (g.folder / "grid.md").read_text()
    # Each run's contamination share: its held-out problems against its training examples.
    assert all(isinstance(r["contamination_share"], float) for r in data["runs"]) and "Contamination" in html

    rows = run_registry.list_runs(grid="g")
    assert len({r["path"] for r in rows}) == 8
    # The copied base evaluation is the computed one, file for file.
    a, b = (g.folder / f"{tiny_model_dir.name}_lora-s1"), (g.folder / f"{tiny_model_dir.name}_dora-s2")
    assert (a / "eval/base/heldout.jsonl").read_text() == (b / "eval/base/heldout.jsonl").read_text()

    # Re-running skips every finished run; `compare` takes the grid folder as its runs.
    again = run_grid(g, report=False)
    assert all(s.get("skipped") for s in again["statuses"].values())
    paths = compare_recipe.compare([g.folder], output=tmp_path / "cmp")
    compared = json.loads(paths["json"].read_text())
    assert len(compared["runs"]) == 8
    shares = {c["label"]: c["contamination_share"] for c in compared["columns"]}
    assert shares["base"] is None and isinstance(shares["tuned"], float)


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, tiny_model_dir, one_torch_thread,
                                                         monkeypatch):
    path = write_grid(tmp_path, {"training.method": ["lora", "dora"]}, seeds=[1],
                      base_extra={"model.name": str(tiny_model_dir), "eval.tasks": []})
    g = load_grid(path)
    real = pipeline._train_stage

    def train_or_fail(cfg, *a, **k):
        if cfg.training.method == "dora":
            raise RuntimeError("simulated out of memory")
        return real(cfg, *a, **k)

    monkeypatch.setattr(pipeline, "_train_stage", train_or_fail)
    statuses = run_grid(g)["statuses"]
    assert statuses["lora-s1"]["status"] == "complete"
    assert (statuses["dora-s1"]["status"] == "failed"
            and "simulated out of memory" in statuses["dora-s1"]["error"])
    data = json.loads((g.folder / "grid.json").read_text())
    assert [r["run"] for r in data["failed"]] == ["dora-s1"]
    assert any("did not complete" in c["text"] for c in data["conclusions"])

    # The next invocation retries only the failed run, resuming its partial folder.
    monkeypatch.setattr(pipeline, "_train_stage", real)
    statuses = run_grid(g)["statuses"]
    assert statuses["lora-s1"].get("skipped") and statuses["dora-s1"]["status"] == "complete"
    assert statuses["dora-s1"]["attempt"] == 2


def test_registry_of_an_earlier_version_gains_the_grid_column(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the version-1 layout of the runs table
        conn.execute("CREATE TABLE runs (path TEXT PRIMARY KEY, name TEXT NOT NULL, model TEXT, "
                     "dataset TEXT, method TEXT, status TEXT, started TEXT, finished TEXT, "
                     "registered_at TEXT NOT NULL, wall_s REAL, train_s REAL, steps INTEGER, epochs REAL, "
                     "tokens_supervised INTEGER, cost_usd REAL, device TEXT, train_loss_first REAL, "
                     "train_loss_last REAL, val_loss_first REAL, val_loss_best REAL, further_training TEXT, "
                     "overfitting INTEGER, forgetting_tasks TEXT, config_json TEXT, manifest_json TEXT)")
        conn.execute("INSERT INTO runs (path, name, registered_at) VALUES ('/x', 'old', '2025-01-01')")
        conn.execute("PRAGMA user_version = 1")
    rows = run_registry.list_runs(db)
    assert [r["name"] for r in rows] == ["old"] and rows[0]["grid"] is None
    assert run_registry.list_runs(db, grid="g") == []


def test_cli_reports_a_bad_grid_in_one_line_with_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    path = write_grid(tmp_path, {"training.methd": ["lora"]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", "grid", str(path), "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "axes.training.methd" in lines[0] and "no key" in lines[0]
