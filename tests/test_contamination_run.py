"""A deliberately contaminated run: 20 test items of a task mixed into the training data."""

from __future__ import annotations

import json
import random

from tunescope.config.loading import load_config
from tunescope.data.split import train_val_split
from tunescope.recipes import run as pipeline
from tunescope.report.summary_table import summary_rows
from tunescope.store.fileio import read_json, read_jsonl
from tunescope.store.scores import sample_key

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "si", "tu", "va", "ze")
         for b in ("bar", "cen", "dol", "fim", "gus", "hap", "jor", "kel", "lom", "mur")]
SEED, N_TRAIN_ROWS, N_TEST, PLANTED = 1234, 90, 40, 20


def problem(rng: random.Random) -> dict:
    answer = rng.randint(2, 99)
    return {"question": " ".join(rng.choice(WORDS) for _ in range(24)).capitalize() + "?",
            "answer": f"{' '.join(rng.choice(WORDS) for _ in range(6))}.\n#### {answer}"}


def build_data(tmp_path):
    """A task file of 40 items and a training file of 90 rows, 20 of them test items, all on the train
    side."""
    rng = random.Random(7)
    test = [problem(rng) for _ in range(N_TEST)]
    planted = sorted(rng.sample(range(N_TEST), PLANTED))
    val_idx = set(train_val_split(list(range(N_TRAIN_ROWS)), 0.1, SEED)[2])
    train_slots = [i for i in range(N_TRAIN_ROWS) if i not in val_idx]
    slots = set(rng.sample(train_slots, PLANTED))
    rows, it = [], iter(planted)
    for i in range(N_TRAIN_ROWS):
        rows.append(dict(test[next(it)]) if i in slots else problem(rng))
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return train_file, task_dir, planted


def test_contaminated_run_flags_exactly_the_planted_items(tiny_model_dir, tmp_path):
    train_file, task_dir, planted = build_data(tmp_path)
    cfg = load_config(None, [
        f"model.name={tiny_model_dir}", f"output_dir={tmp_path / 'runs'}", "name=dirty", f"seed={SEED}",
        f"data.source={train_file}", "training.max_steps=2", "training.batch_size=8", "training.eval_every=2",
        "eval.tasks=[gsm8k]", f"eval.data_path={{gsm8k: {task_dir}}}", "eval.num_fewshot=0", "eval.limit=40",
        "eval.max_new_tokens=4", "eval.batch_size=20", "report.bootstrap_resamples=200"])
    run_dir = pipeline.run(cfg)
    check = read_json(run_dir / "contamination.json")
    task = check["tasks"]["gsm8k"]
    assert task["flagged_doc_ids"] == planted and task["n"] == N_TEST
    assert all(f["span_words"] == 24 for f in task["flagged"])  # the whole question, nothing more
    assert task["duplicates"]["exact"] == PLANTED and task["duplicates"]["doc_ids"] == planted
    assert check["splits"]["validation split"]["n_flagged"] == 0
    results = read_json(run_dir / "eval/tuned/results.json")
    assert results["tunescope"]["contamination"]["tasks"]["gsm8k"]["flagged_doc_ids"] == planted

    report = json.loads((run_dir / "report.json").read_text())
    c = report["contamination"]
    assert c["found"] and c["tasks"][0]["n_flagged"] == PLANTED and c["tasks"][0]["share"] == 0.5
    scores = c["tasks"][0]["scores"]
    assert scores["available"] and scores["test"]["available"] and "permutation" in scores["test"]["method"]
    records = {r["doc_id"]: r for r in read_jsonl(run_dir / "eval/tuned/gsm8k.jsonl")}
    clean_values = [r["metrics"][sample_key(scores["metric"])] for d, r in records.items()
                    if d not in planted]
    tuned = scores["by_label"]["tuned"]
    assert tuned["clean"]["n"] == N_TEST - PLANTED and tuned["flagged"]["n"] == PLANTED
    assert abs(tuned["clean"]["value"] - sum(clean_values) / len(clean_values)) < 1e-12
    assert any(x["section"] == "contamination" for x in report["conclusions"])
    assert any(name.startswith("WARNING: gsm8k items overlap") for name, _ in summary_rows(report))
    for name in ("report.md", "report.html"):
        text = (run_dir / name).read_text()
        assert "8. Contamination" in text and "20 of 40 (50.0%)" in text


def test_clean_run_mentions_no_contamination(tiny_model_dir, tmp_path):
    train_file, task_dir, _ = build_data(tmp_path)
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    test = {json.loads(line)["question"] for line in (task_dir / "test.jsonl").read_text().splitlines()}
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows if r["question"] not in test))
    cfg = load_config(None, [
        f"model.name={tiny_model_dir}", f"output_dir={tmp_path / 'runs'}", "name=clean", f"seed={SEED}",
        f"data.source={train_file}", "training.max_steps=1", "training.batch_size=8",
        "eval.tasks=[gsm8k]", f"eval.data_path={{gsm8k: {task_dir}}}", "eval.num_fewshot=0", "eval.limit=10",
        "eval.max_new_tokens=2", "eval.batch_size=10", "eval.evaluate_base=false"])
    report = json.loads((pipeline.run(cfg) / "report.json").read_text())
    c = report["contamination"]
    assert c["available"] and not c["found"] and c["tasks"][0]["n"] == 10 and c["tasks"][0]["n_flagged"] == 0
    assert not any(x["section"] == "contamination" for x in report["conclusions"])
    assert not any(name.startswith("WARNING") for name, _ in summary_rows(report))


class NoImages(dict):
    def __missing__(self, key: str) -> str:
        return ""


def strict_render(data: dict) -> dict[str, str]:
    """Both report templates rendered with undefined names as errors (images may be absent, as they are
    for a run without plots)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    from tunescope.report.presentation import present
    from tunescope.report.render import FILTERS

    out = {}
    for name, html in (("report.md.j2", False), ("report.html.j2", True)):
        env = Environment(loader=PackageLoader("tunescope.report", "templates"), autoescape=html,
                          trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
        env.filters.update(FILTERS)
        out[name] = env.get_template(name).render(p=present(data), images=NoImages())
    return out


def test_report_section_from_a_recorded_run(tmp_path):
    from synthetic_run import add_contamination, build_run
    from tunescope.analysis.summary import analyse_run
    from tunescope.store.run_folder import open_run

    run = build_run(tmp_path, "planted", n_heldout=40, heldout_base_acc=0.1, heldout_tuned_acc=0.6)
    add_contamination(run, {})
    natural = set(read_json(run / "contamination.json")["tasks"]["heldout"]["flagged_doc_ids"])
    planted = add_contamination(run, {i: "" for i in range(0, 20, 2)})
    data = analyse_run(open_run(run))
    task = next(t for t in data["contamination"]["tasks"] if t["task"] == "heldout")
    # Synthetic questions share template phrases, so a planted question may also overlap other held-out items.
    flagged = set(read_json(run / "contamination.json")["tasks"]["heldout"]["flagged_doc_ids"])
    assert natural | set(planted) <= flagged and task["n_flagged"] == len(flagged)
    assert {f["doc_id"] for f in task["top"]} <= flagged
    tuned = task["scores"]["by_label"]["tuned"]
    right = {i for i in range(40) if i < 24}  # build_run: the tuned model answers items 0..23
    clean = [i for i in range(40) if i not in flagged]
    assert tuned["clean"]["n"] == len(clean)
    assert abs(tuned["clean"]["value"] - sum(i in right for i in clean) / len(clean)) < 1e-12
    assert task["scores"]["test"]["p_holm"] is not None
    assert next(t for t in data["contamination"]["tasks"] if t["task"] == "hellaswag")["n_flagged"] == 0
    rendered = strict_render(data)
    assert "<mark>" in rendered["report.html.j2"] and "Clean subset" in rendered["report.md.j2"]


def test_report_section_of_a_run_without_a_check_says_so(tmp_path):
    from synthetic_run import build_run
    from tunescope.analysis.summary import analyse_run
    from tunescope.store.run_folder import open_run

    data = analyse_run(open_run(build_run(tmp_path, "old")))
    assert not data["contamination"]["available"] and "contamination.json" in data["contamination"]["reason"]
    assert not any(c["section"] == "contamination" for c in data["conclusions"])
    assert "Not available: this run has no contamination check" in strict_render(data)["report.md.j2"]
