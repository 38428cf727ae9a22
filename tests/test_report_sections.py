"""The run report on synthetic run directories (no model): every section, verdicts, flags, conclusions."""

from __future__ import annotations

import json
import math
import re

import pytest

from synthetic_run import build_run
from tunescope.core.errors import UserError
from tunescope.recipes import run as pipeline

INJECTED = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> | [x](http://evil)"


@pytest.fixture(autouse=True)
def _private_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))


@pytest.fixture(scope="module")
def forgetting_run(tmp_path_factory):
    """Heldout (target) drops significantly AND hellaswag (not a target) drops 20 points significantly."""
    root = tmp_path_factory.mktemp("runs")
    run = build_run(root, "drop", heldout_base_acc=0.7, heldout_tuned_acc=0.2, mc_base_acc=0.6,
                    mc_tuned_acc=0.4, inject_response=INJECTED)
    paths = pipeline.write_report(run, register=False)
    return run, json.loads(paths["json"].read_text()), paths


def resolve(data, path: str):
    """Follow a dotted/indexed path like ``evaluation.rows[2].p_holm`` through report.json."""
    node = data
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def test_all_sections_present_and_numbers_labelled(forgetting_run):
    run, data, paths = forgetting_run
    for key in ("overview", "training", "learning_curve", "efficiency", "dataset", "evaluation", "errors",
                "conclusions"):
        assert key in data, key
    o = data["overview"]
    assert o["model"] == "smollm2-135m-instruct" and o["method"] == "lora" and o["split"]["train"] == 60
    assert "PyTorch 2.13.0" in o["framework"] and o["cost_usd"] == pytest.approx(0.0042)
    imp = data["training"]["loss_improvement"]
    assert imp["train"]["available"] and imp["val"]["available"]
    assert imp["train"]["improvement_first_to_best_pct"] >= imp["train"]["improvement_first_to_last_pct"]
    assert (data["training"]["token_accuracy"]["train"]["final"]
            > data["training"]["token_accuracy"]["train"]["first"])
    # Validation loss is 0.8 + 1.2·exp(-step/8), logged every 5 steps: falling over steps 30–40, but a line
    # through three points of a curve has one residual degree of freedom, and its slope test does not reject.
    ft = data["learning_curve"]["further_training"]
    assert ft["further_training_would_likely_help"] == "inconclusive" and ft["basis"] == "val"
    assert ft["val"]["slope_per_step"] < 0 and ft["val"]["p_value"] >= 0.05
    assert "further training would likely help: inconclusive — validation loss slope" in ft["summary"]
    assert (ft["val"]["window_start_step"], ft["val"]["window_end_step"],
            ft["val"]["n_points"]) == (30, 40, 3)
    assert imp["val"]["best"] == {"step": 40, "value": pytest.approx(0.8 + 1.2 * math.exp(-5))}
    assert data["learning_curve"]["overfitting"]["gap_at_last"]["available"]
    assert data["efficiency"]["tokens_supervised"] == 36000
    md = paths["md"].read_text()
    html = paths["html"].read_text()
    assert "teacher-forced" in md and "teacher-forced" in html
    assert data["efficiency"]["loss_path"] == "supervised rows"
    assert "Loss computed by" in md and "matched the model&#39;s own loss" in html
    for heading in ("1. Overview", "2. Key training metrics", "3. Learning curve analysis",
                    "4. Computational efficiency", "5. Dataset insights", "6. Evaluation",
                    "7. Error analysis", "8. Contamination", "9. Conclusions"):
        assert heading in md and heading in html
    # No image or number is lost: images inline in the HTML, as files beside the Markdown.
    assert html.count("data:image/png;base64,") >= 6
    assert (run / "report_images" / "loss_curves.png").is_file() and "report_images/loss_curves.png" in md


def test_forgetting_flag_on_non_target_only(forgetting_run):
    _, data, paths = forgetting_run
    ev = data["evaluation"]
    assert ev["target_tasks"] == ["heldout"]
    assert ev["forgetting_tasks"] == ["hellaswag"]
    for r in ev["rows"]:
        if r["task"] == "heldout":
            # A significant 50-point drop on the training target is a regression, never "forgetting".
            assert r["significant"] and r["delta_points"] < -30 and r["forgetting"] is None
        else:
            assert r["forgetting"] is True and r["p_holm"] < 0.05 and r["delta_points"] == pytest.approx(-20)
            assert r["base_stderr"] and r["n"] == 120 and r["test"] == "McNemar exact"
            assert r["ci_low"] < r["ci_high"] < 0
    assert "Forgetting flagged on: hellaswag" in paths["html"].read_text()


def test_threshold_setting_and_embedding_cap(tmp_path):
    run = build_run(tmp_path, "t", mc_base_acc=0.6, mc_tuned_acc=0.4, n_train=40, n_heldout=12, n_mc=60,
                    extra_overrides=("report.max_texts=20",))
    data = json.loads(pipeline.write_report(run, register=False,
                                            overrides=["report.forgetting_threshold_points=25"])["json"].read_text())
    # A 20-point significant drop is under a 25-point threshold: no flag, and the conclusion says so.
    assert (data["evaluation"]["forgetting_tasks"] == []
            and data["settings"]["forgetting_threshold_points"] == 25)
    assert any("Forgetting on the non-target task(s) hellaswag: not flagged" in c["text"]
               for c in data["conclusions"])
    cl = data["dataset"]["clusters"]
    assert cl["n_embedded"] == 20 and cl["n_total"] == 40 and cl["sampled"]
    assert "20 of 40 questions embedded" in cl["cap_note"] and cl["projection"] == "pca"
    assert data["dataset"]["highest_loss"]["n"] == 40  # losses need no embedding: all examples are ranked
    with pytest.raises(UserError, match="only report"):
        pipeline.write_report(run, overrides=["training.epochs=1"])


def test_conclusions_rest_on_computed_figures(forgetting_run):
    _, data, _ = forgetting_run
    texts = [c["text"] for c in data["conclusions"]]
    assert texts
    for c in data["conclusions"]:
        assert c["basis"], c
        for path in c["basis"]:
            assert resolve(data, path) is not None, (c["text"], path)
    rows = data["evaluation"]["rows"]
    held = next(r for r in rows if r["task"] == "heldout" and r["metric"] == "exact_match,strict-match")
    sentence = next(t for t in texts if t.startswith("heldout exact match (strict-match)"))
    assert f"{100 * held['base']:.1f}%" in sentence and f"{100 * held['tuned']:.1f}%" in sentence
    assert "fell" in sentence and "McNemar exact" in sentence
    assert any(t.startswith("Forgetting flagged on hellaswag") for t in texts)
    assert not any("Forgetting flagged on heldout" in t for t in texts)
    of = data["learning_curve"]["overfitting"]
    assert any(t.startswith("No overfitting: ") for t in texts) == (of["overfitting"] is False)
    assert any(t.startswith("Inconclusive: ") for t in texts) == (of["overfitting"] is None)


def test_run_without_evaluation_renders_and_says_so(tmp_path):
    run = build_run(tmp_path, "noeval", with_eval=False, overfit=True, n_train=15)
    paths = pipeline.write_report(run, register=False)
    data = json.loads(paths["json"].read_text())
    assert data["evaluation"]["available"] is False and "no evaluation" in data["evaluation"]["reason"]
    assert data["errors"]["available"] is False
    assert not [c for c in data["conclusions"] if c["section"] in ("evaluation", "errors")]
    html, md = paths["html"].read_text(), paths["md"].read_text()
    assert "this run has no evaluation" in html and "this run has no evaluation" in md
    # Words and clusters come from the training questions even without any evaluation.
    assert data["dataset"]["question_words"]["available"] and data["dataset"]["clusters"]["available"]
    assert data["dataset"]["answer_words"]["available"] is False
    # This run's validation loss turns up after step 20: the verdict and its conclusion say so, with numbers.
    of = data["learning_curve"]["overfitting"]
    assert of["overfitting"] is True and of["best_step"] < of["last_step"]
    assert any(c["text"].startswith("Overfitting: validation loss rose") for c in data["conclusions"])
    assert not any("No evidence of overfitting" in c["text"] for c in data["conclusions"])


def test_without_train_examples_falls_back_and_says_why(tmp_path):
    run = build_run(tmp_path, "old", with_train_examples=False, n_heldout=20, n_mc=20)
    data = json.loads(pipeline.write_report(run, register=False)["json"].read_text())
    ds = data["dataset"]
    assert ds["highest_loss"]["available"] is False and "train_examples.jsonl" in ds["highest_loss"]["reason"]
    assert ds["question_words"]["source"].startswith("evaluation questions")
    assert ds["clusters"]["eval_assignment"] == "the clustered questions are the evaluation questions"
    assert data["errors"]["tasks"][0]["by_cluster"]


def test_error_taxonomy_and_accuracy_breakdowns(forgetting_run):
    _, data, _ = forgetting_run
    t = data["errors"]["tasks"][0]
    assert t["task"] == "heldout" and t["labels"] == ["base", "tuned"]
    for label in ("base", "tuned"):
        s = t["summary"][label]
        assert sum(s["counts"].values()) == s["n_wrong"] == s["n"] - s["n_correct"]
        for c in t["categories"]:
            assert len(c[label]["examples"]) <= 2
    assert sum(g["tuned"]["n"] for g in t["by_steps"] if g["tuned"]) == 40
    assert sum(g["base"]["n"] for g in t["by_cluster"] if g["base"]) == 40


def test_model_text_is_escaped_in_html_and_markdown(forgetting_run):
    _, _, paths = forgetting_run
    html = paths["html"].read_text()
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "&lt;script&gt;document.title=" in html and "<img src=x" not in html
    assert "Content-Security-Policy" in html and "script-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    md = paths["md"].read_text()
    # In Markdown, model text is either inside a fenced code block (shown verbatim, never rendered) ...
    assert "A: <script>document.title=" in md
    outside = re.sub(r"(?ms)^(`{3,})text\n.*?\n\1$", "", md)
    # ... or escaped: no raw tag, no link, no image outside the fences.
    assert "<script" not in outside and "<img" not in outside and "](http://evil)" not in outside


def test_missing_or_unfinished_run_dir_names_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        pipeline.write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"missing config\.yaml, manifest\.json"):
        pipeline.write_report(tmp_path / "empty")
    run = build_run(tmp_path, "unfinished", with_eval=False, n_train=5)
    m = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**m, "status": "running"}))
    with pytest.raises(UserError, match=r"not finished \(status: running\)"):
        pipeline.write_report(run)
    (run / "manifest.json").write_text(json.dumps(m))
    (run / "train_examples.jsonl").write_text('{"index": 0}\nnot json\n')
    with pytest.raises(UserError, match=r"train_examples\.jsonl:2"):
        pipeline.write_report(run)


def test_summary_table_reads_the_new_report(forgetting_run):
    from tunescope.report.summary_table import summary_rows

    _, data, _ = forgetting_run
    rows = dict(summary_rows(data))
    assert any("FORGETTING" in v for v in rows.values())
    assert ("final train token accuracy (teacher-forced)" in rows
            and "further training would likely help" in rows)


def test_report_templates_only_show_presented_figures():
    # Formatting and decisions live in report/presentation.py; the templates escape, loop and read fields.
    from pathlib import Path

    import tunescope.report

    templates = Path(tunescope.report.__file__).parent / "templates"
    for name in ("report.md.j2", "report.html.j2"):
        text = (templates / name).read_text()
        expressions = re.findall(r"{{(.*?)}}", text)
        used = {f for e in expressions for f in re.findall(r"\|\s*([a-z_]+)", e)}
        assert used <= {"mdcell", "mdblock"}, (name, used)
        assert not re.search(r"{%\s*(if|elif)[^%]*(==|!=|<|>| is | and | or )", text), name
