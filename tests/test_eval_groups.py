"""Task groups (`mmlu`, `mmlu_stem`, ...): expansion, lm-eval's size-weighted score and pooled stderr,
the results layout and table, and paired records for the report."""

from __future__ import annotations

import json
import math

import pytest

from tunescope.analysis.stats import with_group_samples
from tunescope.evaluate import evaluate, format_results_table, load_tasks
from tunescope.evaluate.groups import add_group_results, data_path_for, expand, leaves, pooled_stderr
from tunescope.evaluate.metrics import stderr


def test_expand_replaces_groups_by_their_subjects_once():
    tasks, groups = expand(["mmlu"])
    assert len(tasks) == 57 and len(set(tasks)) == 57
    assert groups == ["mmlu", "mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities"]
    tasks, groups = expand(["gsm8k", "mmlu_anatomy", "mmlu_stem"])
    assert (tasks[:2] == ["gsm8k", "mmlu_anatomy"] and tasks.count("mmlu_anatomy") == 1
            and len(tasks) == 1 + 19)
    assert groups == ["mmlu_stem"]
    assert leaves("hellaswag") == ["hellaswag"]


def test_group_data_path_serves_its_subjects_unless_a_subject_has_its_own():
    paths = {"mmlu": "/all", "mmlu_humanities": "/hum", "mmlu_anatomy": "/anatomy"}
    assert data_path_for("mmlu_anatomy", paths) == "/anatomy"
    assert data_path_for("mmlu_philosophy", paths) == "/hum"  # the innermost group wins
    assert data_path_for("mmlu_virology", paths) == "/all"
    assert data_path_for("gsm8k", paths) is None


def test_group_score_is_size_weighted_and_stderr_pooled():
    a, b = [1, 0, 1, 1], [0, 0, 1]
    # Worked by hand: sample variances 1/4 and 1/3; pooled (3·1/4 + 2·1/3) / (7 − 2); stderr sqrt(that / 7).
    expected = math.sqrt((3 * 0.25 + 2 / 3) / 5 / 7)
    assert pooled_stderr([stderr(a), stderr(b)], [4, 3]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2012, abs=1e-4)


def _mmlu_folder(tmp_path, subjects, n=2):
    for i, subject in enumerate(subjects):
        rows = [f"{subject} question {j}?,alpha,beta,gamma,delta,{'ABCD'[(i + j) % 4]}\n"
                for j in range(n + i % 2)]
        (tmp_path / f"{subject}_test.csv").write_text("".join(rows))
    return tmp_path


def test_evaluating_a_group_scores_it_like_lm_eval(tmp_path, tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    subjects = [t[len("mmlu_"):] for t in leaves("mmlu_humanities")]
    (tmp_path / "data").mkdir()
    folder = _mmlu_folder(tmp_path / "data", subjects)
    tasks, groups = load_tasks(["mmlu_humanities"], data_paths={"mmlu": str(folder)})
    assert len(tasks) == 13 and groups == ["mmlu_humanities"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    out = tmp_path / "out"
    res = evaluate(model, tiny_tokenizer, tasks, batch_size=4, out_dir=out, groups=groups)

    sizes = {t.name: len(t.docs) for t in tasks}
    entry = res["results"]["mmlu_humanities"]
    weighted = sum(res["results"][t]["acc,none"] * n for t, n in sizes.items()) / sum(sizes.values())
    assert entry["acc,none"] == pytest.approx(weighted) and entry["sample_len"] == sum(sizes.values())
    assert entry["acc_stderr,none"] == pytest.approx(
        pooled_stderr([res["results"][t]["acc_stderr,none"] for t in sizes], list(sizes.values())))
    assert entry["alias"] == "humanities" and res["groups"]["mmlu_humanities"] == entry
    assert res["group_subtasks"]["mmlu_humanities"] == [t.name for t in tasks]
    assert res["versions"]["mmlu_humanities"] == 2
    assert (json.loads((out / "results.json").read_text())["groups"]["mmlu_humanities"]["acc,none"]
            == entry["acc,none"])

    table = format_results_table(res)
    lines = table.splitlines()
    assert lines[2].startswith("|humanities ") and lines[3].startswith("| - formal_logic ")
    assert "|Groups" in table  # lm-eval's second table, the groups alone


def test_group_records_are_paired_item_by_item():
    results = {"groups": {"g": {}}, "group_subtasks": {"g": ["t1", "t2"], "t1": [], "t2": []}}
    samples = {"t1": [{"doc_id": 0, "metrics": {"acc": 1}}], "t2": [{"doc_id": 0, "metrics": {"acc": 0}}]}
    out = with_group_samples(results, samples)
    assert [r["doc_id"] for r in out["g"]] == ["t1/0", "t2/0"] and out["t1"] == samples["t1"]


def test_incomplete_group_is_not_scored():
    results = {"results": {"mmlu_anatomy": {"acc,none": 0.5, "acc_stderr,none": 0.1}},
               "n-samples": {"mmlu_anatomy": {"effective": 10}}}
    add_group_results(results, ["mmlu_stem"])
    assert "mmlu_stem" not in results["results"] and "groups" not in results


def test_group_formulas_agree_with_lm_eval():
    metrics = pytest.importorskip("lm_eval.api.metrics")
    sizes, stderrs, values = [100, 7, 311, 45], [0.043, 0.18, 0.025, 0.07], [0.31, 0.57, 0.24, 0.4]
    assert pooled_stderr(stderrs, sizes) == pytest.approx(metrics.pooled_sample_stderr(stderrs, sizes))
    weighted = sum(v * n for v, n in zip(values, sizes, strict=True)) / sum(sizes)
    assert weighted == pytest.approx(metrics.aggregate_subtask_metrics(values, sizes, True))
