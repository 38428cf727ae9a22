"""Tasks scored during training: records and per-item files, the checks made before the model loads."""

from __future__ import annotations

import json

import pytest

from tunescope.config.loading import load_config
from tunescope.core.errors import UserError
from tunescope.recipes import compare as compare_recipe
from tunescope.recipes import run as pipeline
from tunescope.store.fileio import read_jsonl
from tunescope.store.run_folder import open_run
from tunescope.store.schema import TaskEvalRecord


def scored_run_config(model_dir, out_dir, *extra):
    return load_config(None, [
        f"model.name={model_dir}", f"output_dir={out_dir}", "name=scored", "data.synthetic_size=24",
        "training.max_steps=4", "training.batch_size=4", "training.eval_every=2", "training.threads=1",
        "eval.heldout_size=8", "eval.limit=4", "eval.max_new_tokens=12", "eval.batch_size=4",
        "eval.evaluate_base=false", "eval.during_training.enabled=true", "eval.during_training.limit=5",
        "eval.during_training.every=3", *extra])


def test_scores_at_step_zero_every_n_steps_and_the_last(tiny_model_dir, tmp_path, one_torch_thread):
    run_dir = pipeline.run(scored_run_config(tiny_model_dir, tmp_path))
    record = open_run(run_dir)
    scored = record.records(TaskEvalRecord)
    assert [(r.step, r.metric) for r in scored] == [
        (s, m) for s in (0, 3, 4) for m in ("exact_match,strict-match", "exact_match,flexible-extract")]
    assert all(r.task == "heldout" and r.n == 5 and r.seconds > 0 and 0 <= r.value <= 1 for r in scored)
    # Written as typed, read back as written.
    lines = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "task_eval"]
    assert [r.as_dict() for r in scored] == lines
    assert set(lines[0]) == {"kind", "step", "task", "metric", "value", "stderr", "n", "seconds"}
    # The same 5 items at every point, named by their index among the 8 held-out problems.
    items = {step: record.task_item_records(step, "heldout") for step in (0, 3, 4)}
    ids = [r["doc_id"] for r in items[0]]
    assert len(ids) == 5 and all(0 <= i < 8 for i in ids)
    assert all([r["doc_id"] for r in recs] == ids for recs in items.values())
    summary = record.summary
    assert summary.selected_by == "val_loss" and summary.best_step == summary.best_by["val_loss"]["step"]
    assert summary.task_eval_s > 0 and summary.wall_s > summary.train_s
    assert set(summary.best_by) == {"val_loss", "heldout:exact_match,strict-match",
                                    "heldout:exact_match,flexible-extract"}


def test_off_by_default_writes_nothing_new(tiny_model_dir, tmp_path, one_torch_thread):
    cfg = scored_run_config(tiny_model_dir, tmp_path, "eval.during_training.enabled=false", "eval.tasks=[]")
    run_dir = pipeline.run(cfg)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert not [r for r in metrics if r["kind"] == "task_eval"] and not (run_dir / "eval" / "steps").exists()
    assert not {"selected_by", "best_by", "task_eval_s"} & set(metrics[-1])


@pytest.mark.parametrize("overrides, key, message", [
    (["eval.during_training.tasks=[no_such_task]"], "eval.during_training.tasks", "no_such_task"),
    (["eval.during_training.tasks=[mmlu]"], "eval.during_training.tasks", "group"),
    (["eval.during_training.limit=9"], "eval.during_training.limit", "has 8"),
    (["training.select_best_by=heldout:acc"], "training.select_best_by", "exact_match,flexible-extract"),
    (["training.early_stopping_on=heldout:exact_match"], "training.early_stopping_on", "does not produce"),
])
def test_bad_input_names_the_key_before_the_model_loads(tmp_path, overrides, key, message):
    # The model does not exist: an error about it would mean the check came too late.
    cfg = scored_run_config(tmp_path / "no-model-here", tmp_path, *overrides)
    with pytest.raises(UserError) as err:
        pipeline.run(cfg)
    assert err.value.where == key and message in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["training.select_best_by=heldout:exact_match,strict-match"], "needs eval.during_training.enabled=true"),
    (["eval.during_training.enabled=true", "training.early_stopping_on=gsm8k:exact_match,strict-match"],
     "not scored during training"),
    (["training.select_best_by=heldout"], "'<task>:<metric>'"),
])
def test_a_criterion_needs_its_task_scored(overrides, message):
    with pytest.raises(UserError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "training." in str(err.value)


def _disagreeing_data(root):
    """Training data whose majority answer is learned first and its minority rule later.

    Two thirds of the rows answer "7" ("<n> blue"), one third "3" ("<n> red"). The probe, in
    HellaSwag's layout, asks "<n> red" with "7" as the gold ending: a model that has learned only
    the majority answer gets it right, one that has learned the rule gets it wrong. So probe accuracy
    rises and then falls while validation loss falls throughout.
    """
    import json
    import random

    rng = random.Random(0)
    rows = [{"question": f"{rng.randint(10, 99)} {'red' if i % 3 == 0 else 'blue'}",
             "answer": "3" if i % 3 == 0 else "7"}
            for i in range(200)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    probe = [{"activity_label": "Instruction", "ctx": f"{rng.randint(10, 99)} red\nResponse:",
              "endings": ["7", "3"], "label": 0} for _ in range(32)]
    (root / "probe").mkdir()
    (root / "probe" / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in probe))


def test_task_metric_ships_its_best_step_and_the_report_flags_the_divergence(tiny_model_dir, tmp_path,
                                                                             one_torch_thread):
    _disagreeing_data(tmp_path)
    cfg = load_config(None, [
        f"model.name={tiny_model_dir}", f"output_dir={tmp_path}", "name=diverging",
        f"data.source={tmp_path / 'train.jsonl'}", "training.method=full", "training.max_steps=100",
        "training.batch_size=8", "training.eval_every=10", "training.threads=1", "training.warmup_ratio=0",
        "training.learning_rate=5e-3", "training.lr_scheduler=constant",
        "training.early_stopping_patience=null", "prompt.max_length=32",
        "training.select_best_by=hellaswag:acc", "eval.tasks=[hellaswag]", "eval.limit=32",
        "eval.evaluate_base=false", f"eval.data_path={{hellaswag: {tmp_path / 'probe'}}}",
        "eval.during_training.enabled=true", "eval.during_training.tasks=[hellaswag]",
        "eval.during_training.limit=32", "report.embedding_backend=tfidf"])
    run_dir = pipeline.run(cfg)
    record = open_run(run_dir)
    acc = {r.step: r.value for r in record.records(TaskEvalRecord) if r.metric == "acc,none"}
    summary = record.summary
    best_task_step = min(s for s, v in acc.items() if v == max(acc.values()))
    assert acc[best_task_step] > acc[100] + 0.5  # the probe peaked and fell...
    assert summary.best_by["val_loss"]["step"] > best_task_step  # ...while validation loss kept improving
    # The shipped weights are the probe's best step, not the last or the lowest-loss one.
    assert summary.selected_by == "hellaswag:acc,none" and summary.best_step == best_task_step
    tuned = record.evaluations["tuned"].results["results"]["hellaswag"]["acc,none"]
    assert tuned == acc[best_task_step]

    report = record.report
    div = report["task_curves"]["divergence"]
    assert div["diverged_tasks"] == ["hellaswag"]
    check = div["checks"][0]
    assert (check["direction"] == "validation loss improved while task accuracy fell"
            and check["p_holm"] < 0.05)
    assert check["test"]["method"].startswith("chi-square") or check["test"]["method"] == "exact binomial"
    texts = [c["text"] for c in report["conclusions"]]
    assert any(t.startswith("Divergence on hellaswag: validation loss improved while task accuracy fell")
               and "McNemar" in t for t in texts)
    assert any(f"step {best_task_step}'s, chosen by hellaswag:acc,none" in t
               and "val_loss would have shipped" in t for t in texts)
    md = (run_dir / "report.md").read_text()
    assert "Task accuracy during training" in md and "report_images/task_curves.png" in md
    assert "Scoring tasks during training" in md


RESUME_OVERRIDES = [
    "data.synthetic_size=60", "eval.tasks=[]", "prompt.max_length=128", "training.max_steps=9",
    "training.batch_size=4", "training.eval_every=3", "training.checkpoint_every=2",
    "training.learning_rate=1e-2", "training.threads=1",
    "eval.heldout_size=6", "eval.max_new_tokens=16", "eval.during_training.enabled=true",
    "eval.during_training.limit=6", "training.select_best_by=heldout:exact_match,flexible-extract"]


def test_a_killed_and_resumed_run_scores_like_an_uninterrupted_one(tmp_path, tiny_model_dir):
    import shutil

    from kill_resume import KillResume

    runs = KillResume(tmp_path, tiny_model_dir, RESUME_OVERRIDES)
    out = runs.out
    straight = runs.start("straight", report=False)
    killed = runs.start("killed", hold_at=6, report=False)
    runs.kill_when_held(killed)
    # The kill lands between checkpoints: steps 5-6, and the step-6 scores, are done again.
    shutil.rmtree(out / ".killed.partial" / "checkpoints" / "step-00000006")
    runs.finish(runs.start("killed", resume=True, report=False))
    runs.finish(straight)

    def scored(run):
        records = read_jsonl(out / f".{run}.partial" / "metrics.jsonl")
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records if r["kind"] == "task_eval"]

    assert [r["step"] for r in scored("killed")][::2] == [0, 3, 6, 9]
    assert scored("killed") == scored("straight")
    for step in (0, 3, 6, 9):
        a = read_jsonl(out / ".straight.partial" / "eval" / "steps" / str(step) / "heldout.jsonl")
        b = read_jsonl(out / ".killed.partial" / "eval" / "steps" / str(step) / "heldout.jsonl")
        assert a == b and len(a) == 6
    summaries = [read_jsonl(out / f".{run}.partial" / "metrics.jsonl")[-1] for run in ("straight", "killed")]
    assert summaries[1]["resumed_from_step"] == 4
    assert [{k: s[k] for k in ("best_step", "selected_by", "best_by")} for s in summaries][0] == \
        {k: summaries[1][k] for k in ("best_step", "selected_by", "best_by")}


def test_compare_overlays_task_curves_and_runs_show_lists_each_criterion(tmp_path, monkeypatch):
    import json

    from synthetic_run import add_task_curves, build_run
    from tunescope.store import registry

    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))
    a = add_task_curves(build_run(tmp_path, "a", with_train_examples=False),
                        {"heldout": {0: 0.1, 20: 0.5, 40: 0.4}, "hellaswag": {0: 0.6, 20: 0.6, 40: 0.55}},
                        selected_by="heldout:exact_match,strict-match")
    b = add_task_curves(build_run(tmp_path, "b", with_train_examples=False),
                        {"heldout": {0: 0.1, 20: 0.3, 40: 0.45}})
    pipeline.write_report(a)  # registers the run too
    shown = registry.get_run("a")
    assert shown["selected_by"] == "heldout:exact_match,strict-match"
    assert shown["best_by"]["heldout:exact_match,strict-match"] == {"step": 20, "value": 0.5}
    assert shown["best_by"]["val_loss"]["step"] == 20 and shown["best_by"]["hellaswag:acc,none"]["step"] == 0

    paths = compare_recipe.compare([a, b], output=tmp_path / "cmp")
    data = json.loads(paths["json"].read_text())
    curves = {e["task"]: [(s["run"], s["steps"], s["values"]) for s in e["runs"]]
              for e in data["task_curves"]}
    assert curves["heldout"] == [("a", [0, 20, 40], [0.1, 0.5, 0.4]), ("b", [0, 20, 40], [0.1, 0.3, 0.45])]
    assert [r for r, _, _ in curves["hellaswag"]] == ["a"]
    assert (tmp_path / "cmp" / "report_images" / "task_curve_heldout.png").is_file()
    assert "Task scores during training" in paths["md"].read_text()
    assert "data:image/png;base64," in paths["html"].read_text()


def test_forgetting_during_training_is_flagged_against_step_zero(tmp_path):
    from synthetic_run import add_task_curves, build_run

    run = add_task_curves(build_run(tmp_path, "forgets", with_train_examples=False),
                          {"heldout": {0: 0.1, 20: 0.5, 40: 0.6}, "hellaswag": {0: 0.8, 20: 0.5, 40: 0.75}},
                          n=60)
    pipeline.write_report(run, register=False)
    tc = json.loads((run / "report.json").read_text())["task_curves"]
    fg = tc["forgetting"]
    assert fg["forgetting_tasks"] == ["hellaswag"] and fg["worst"]["hellaswag"]["step"] == 20
    assert [t["forgetting"] for t in fg["tests"]] == [True, False]  # step 40's 5-point drop: not significant
    assert all(t["p_holm"] >= t["p_value"] for t in fg["tests"])
    assert tc["further_training"][0]["task"] == "heldout" and tc["overfitting"][0]["overfitting"] is False


def test_a_registry_from_an_older_version_gains_the_new_columns(tmp_path, monkeypatch):
    import sqlite3

    from synthetic_run import build_run
    from tunescope.store import registry

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    old = registry._SCHEMA.replace("    selected_by TEXT,\n    best_by_json TEXT,\n", "")
    conn.executescript(old + "PRAGMA user_version = 1;")
    conn.close()
    registry.register_run(build_run(tmp_path, "old", with_train_examples=False), db=path)
    assert registry.get_run("old", db=path)["best_by"] is None


@pytest.mark.parametrize("checkpointing", [False, True])
def test_scoring_in_place_leaves_training_unchanged(tiny_model_dir, tiny_tokenizer, tmp_path, checkpointing,
                                                    one_torch_thread):
    """Dropout, gradient checkpointing, the weight layout and the RNG are as training left them."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunescope.config.run_config import DEFAULT_TEMPLATE, LoraConfig, TrainingConfig
    from tunescope.data.prompting import encode_dataset
    from tunescope.data.synthetic import generate_problems
    from tunescope.evaluate import task_from_docs
    from tunescope.evaluate.during_training import TrainingTimeScorer
    from tunescope.train.adapters import build_trainable
    from tunescope.train.loop import train

    rows = generate_problems(20, seed=0)
    examples, _ = encode_dataset(rows[:16], tiny_tokenizer, template=DEFAULT_TEMPLATE,
                                 use_chat_template=False, train_on_prompt=False, max_length=160,
                                 overflow="truncate")
    heldout = task_from_docs("heldout", rows[16:], "Instruction: {question}\nResponse:")
    results = []
    for scored in (False, True):
        cfg = TrainingConfig(max_steps=4, batch_size=4, learning_rate=1e-2, eval_every=2,
                             gradient_checkpointing=checkpointing, lora=LoraConfig(dropout=0.1))
        torch.manual_seed(0)
        model = build_trainable(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
        scorer = TrainingTimeScorer([(heldout, [0, 1, 2, 3])], tiny_tokenizer, tmp_path / str(scored),
                                    every=1, batch_size=4, max_new_tokens=8) if scored else None
        records = []
        train(model, examples, examples[:4], cfg, seed=1, pad_id=2, device=torch.device("cpu"),
              dtype=torch.float32, log=records.append, scorer=scorer)
        assert model.training
        timeless = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records
                    if r["kind"] in ("train", "val")]
        results.append((timeless,
                        {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
        if scored:
            assert [r["step"] for r in records if r["kind"] == "task_eval"][::2] == [0, 1, 2, 3, 4]
    (plain_records, plain_params), (scored_records, scored_params) = results
    assert plain_records == scored_records
    assert all(torch.equal(plain_params[n], scored_params[n]) for n in plain_params)
