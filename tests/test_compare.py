"""`tunescope compare`: models × tasks with score ± stderr, the best per row, paired tests vs a baseline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from synthetic_run import build_run
from tunescope.analysis.compare import item_fingerprint
from tunescope.core.errors import UserError
from tunescope.recipes import compare as compare_recipe

# Fewer paired-bootstrap resamples than the report default keep these tests fast.
BOOT_1000 = ["report.bootstrap_resamples=1000"]
BOOT_200 = ["report.bootstrap_resamples=200"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    a = build_run(root, "alpha", heldout_tuned_acc=0.6, mc_tuned_acc=0.4, n_train=5)
    b = build_run(root, "beta", heldout_tuned_acc=0.3, mc_tuned_acc=0.6, n_train=5, model="tinyllama-1.1b")
    c = build_run(root, "gamma", seed=99, n_train=5)  # different held-out problems under the same doc_ids
    return root, a, b, c


def test_table_cells_best_and_paired_tests(runs):
    root, a, b, _ = runs
    paths = compare_recipe.compare([a, b], output=root / "out1", overrides=BOOT_1000)
    data = json.loads(paths["json"].read_text())
    ids = [c["id"] for c in data["columns"]]
    assert ids == ["alpha (base)", "alpha (tuned)", "beta (base)", "beta (tuned)"]
    assert data["baseline"] == "alpha (base)"
    row = next(r for r in data["rows"]
               if r["task"] == "heldout" and r["metric"] == "exact_match,strict-match")
    assert row["best"] == ["alpha (tuned)"] and row["n_values"] == [40]
    assert row["cells"]["alpha (tuned)"]["value"] == pytest.approx(0.6)
    t = row["tests"]["alpha (tuned)"]
    assert t["available"] and t["n"] == 40 and t["method"] == "McNemar exact" and (t["b"], t["c"]) == (0, 20)
    assert t["p_holm"] >= t["p_value"] and t["significant"] and t["ci_low"] > 0
    assert row["tests"]["beta (base)"]["delta_points"] == 0 and not row["tests"]["beta (base)"]["significant"]
    assert data["n_comparisons"] == sum(1 for r in data["rows"] for t in r["tests"].values()
                                        if t.get("available"))
    md = paths["md"].read_text()
    assert "| heldout | exact match (strict-match) | 40 | 10.00% ± 4.80% | **60.00% ± 7.84%** |" in md
    html = paths["html"].read_text()
    assert "<strong>60.00% ± 7.84%</strong>" in html and "script-src 'none'" in html
    # hellaswag: alpha (tuned) dropped 20 points on the same items -> significantly worse than the baseline.
    hs = next(r for r in data["rows"] if r["task"] == "hellaswag" and r["metric"] == "acc,none")
    assert hs["tests"]["alpha (tuned)"]["significant"] and hs["tests"]["alpha (tuned)"]["delta_points"] < 0
    assert set(hs["best"]) == {"alpha (base)", "beta (base)", "beta (tuned)"}


def test_different_items_under_same_doc_ids_are_not_paired(runs):
    root, a, _, c = runs
    data = json.loads(compare_recipe.compare([a, c], output=root / "out2",
                                             overrides=BOOT_1000)["json"].read_text())
    held = next(r for r in data["rows"]
                if r["task"] == "heldout" and r["metric"] == "exact_match,strict-match")
    t = held["tests"]["gamma (base)"]
    assert t["available"] is False and "different items" in t["reason"] and t["n_shared_doc_ids"] == 40
    # Multiple-choice items are the same in both runs, so those are paired.
    hs = next(r for r in data["rows"] if r["task"] == "hellaswag" and r["metric"] == "acc,none")
    assert hs["tests"]["gamma (base)"]["available"]


def test_baseline_choice(runs):
    root, a, b, _ = runs
    for ref, expected in (("beta", "beta (base)"), ("beta:tuned", "beta (tuned)"),
                          ("alpha (tuned)", "alpha (tuned)"), (str(b), "beta (base)")):
        data = json.loads(compare_recipe.compare([a, b], baseline=ref, output=root / "out3",
                                                 overrides=BOOT_200)["json"].read_text())
        assert data["baseline"] == expected
        assert all(expected not in r["tests"] for r in data["rows"])
    with pytest.raises(UserError, match=r"'delta' is none of the compared runs.*alpha \(base\)"):
        compare_recipe.compare([a, b], baseline="delta", output=root / "out3")


def test_eval_only_folder_is_one_column(runs, tmp_path):
    _, a, _, _ = runs
    ev = tmp_path / "tinyllama-eval"
    shutil.copytree(a / "eval" / "tuned", ev)
    settings = ["report.bootstrap_resamples=200", "report.alpha=0.01"]
    data = json.loads(compare_recipe.compare([a, ev], output=tmp_path / "o",
                                             overrides=settings)["json"].read_text())
    assert (data["alpha"], data["n_boot"]) == (0.01, 200)  # the report.* settings, as in a run's report
    assert [c["id"] for c in data["columns"]][-1] == "tinyllama-eval"
    row = data["rows"][0]
    assert row["tests"]["tinyllama-eval"]["delta_points"] == row["tests"]["alpha (tuned)"]["delta_points"]
    with pytest.raises(UserError, match="neither a run directory"):
        compare_recipe.compare([a, tmp_path / "o"], output=tmp_path / "o2")


def test_fingerprint_ignores_the_model_output():
    gen = {"doc_id": 1, "question": "q", "target": "#### 3", "response": "x", "metrics": {}}
    assert item_fingerprint(gen) == item_fingerprint({**gen, "response": "y", "prompt_hash": "other"})
    assert item_fingerprint(gen) != item_fingerprint({**gen, "question": "q2"})
    mc = {"doc_id": 1, "target": 2, "choices": ["a", "b", "c"], "loglikelihoods": [1, 2, 3]}
    assert item_fingerprint(mc) == item_fingerprint({**mc, "loglikelihoods": [3, 2, 1]})
    assert item_fingerprint(mc) != item_fingerprint({**mc, "target": 1})


def test_cli_compare(runs, tmp_path):
    root, a, b, _ = runs
    env = {**os.environ, "TUNESCOPE_REGISTRY": str(tmp_path / "r.sqlite")}
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", "compare", str(a), str(b), "--baseline",
                           "beta", "--output", str(tmp_path / "cmp")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cmp" / "comparison.html").is_file() and "comparison.md" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", "compare", str(a),
                           str(tmp_path / "missing")], capture_output=True, text=True, env=env, timeout=120)
    assert (proc.returncode == 2 and "run directory not found" in proc.stderr
            and "Traceback" not in proc.stderr)
