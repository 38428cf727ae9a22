"""Recipes: the whole run (base eval → train → tuned eval → report) and its parts.

Each recipe reads one `RunConfig` and writes one run directory. The CLI calls these; they call
the stage modules (data, models, train, evaluate, analysis) and hand plain dictionaries to report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tunescope import run_record as rr
from tunescope.config import RunConfig, dump_config
from tunescope.errors import UserError
from tunescope.runio import RunDir, git_sha, library_versions, now_iso, write_json, write_text_atomic

# Per-example losses cost one forward pass each; beyond this many the report samples are enough.
MAX_EXAMPLE_LOSSES = 512


class Reporter:
    """Progress callbacks; the CLI draws them with rich, tests use this silent default."""

    def stage(self, name: str) -> None: ...

    def progress(self, what: str, done: int, total: int) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class Prepared:
    train_rows: list[dict]
    val_rows: list[dict]
    heldout_rows: list[dict]
    info: dict = field(default_factory=dict)


def prepare_data(cfg: RunConfig) -> Prepared:
    """Load the training source, split it, and pick held-out problems the model never trains on."""
    from tunescope.data.sources import load_rows, rows_hash
    from tunescope.data.split import train_val_split

    d = cfg.data
    seed = cfg.data_seed
    rows = load_rows(d.source, split=d.split, question_field=d.question_field, answer_field=d.answer_field,
                     limit=d.limit, synthetic_size=d.synthetic_size, seed=seed)
    train_rows, val_rows, val_idx = train_val_split(rows, d.val_fraction, seed)
    if d.source == "synthetic-math":
        from tunescope.data.synthetic import generate_heldout

        # A different seed gives new problems; any question that also appears in training is skipped,
        # and problems are drawn until there are eval.heldout_size of them.
        try:
            heldout = generate_heldout(cfg.eval.heldout_size, seed=seed + 1_000_003,
                                       exclude={r["question"] for r in rows})
        except ValueError as e:
            raise UserError(f"{e}; lower eval.heldout_size", where="eval.heldout_size") from None
        heldout_from = "synthetic-math (fresh problems, disjoint from training)"
    elif d.source == "gsm8k":
        heldout = load_rows("gsm8k", split="test", limit=cfg.eval.heldout_size)
        heldout_from = "gsm8k test split"
    else:
        heldout = val_rows[: cfg.eval.heldout_size]
        heldout_from = "the validation split (not trained on)"
    info = {"source": d.source, "rows": len(rows), "train": len(train_rows), "val": len(val_rows),
            "heldout": len(heldout), "heldout_from": heldout_from, "val_fraction": d.val_fraction,
            "split_seed": seed, "data_hash": rows_hash(rows), "val_indices_head": val_idx[:20]}
    return Prepared(train_rows, val_rows, heldout, info)


def heldout_task(cfg: RunConfig, heldout_rows: list[dict], samples: int = 1, temperature: float | None = None):
    """The held-out problems as a task, asked exactly as training formatted them."""
    from tunescope.data.prompting import prompt_prefix
    from tunescope.evaluate import sampling_overrides, task_from_docs

    sampling = sampling_overrides(samples, temperature)
    if cfg.prompt.use_chat_template:
        return task_from_docs("heldout", heldout_rows, "{question}", apply_chat_template=True, **sampling)
    return task_from_docs("heldout", heldout_rows, prompt_prefix(cfg.prompt.template), **sampling)


def build_tasks(cfg: RunConfig, heldout_rows: list[dict]) -> tuple[list, list[str]]:
    """(tasks to run, groups to score): the held-out task first, then the built-in tasks and groups."""
    from tunescope.evaluate import load_tasks

    sampling = {"samples": cfg.eval.samples, "temperature": cfg.eval.temperature}
    tasks = []
    if "heldout" in cfg.eval.tasks:
        tasks.append(heldout_task(cfg, heldout_rows, **sampling))
    builtin, groups = load_tasks([t for t in cfg.eval.tasks if t != "heldout"], data_paths=cfg.eval.data_path,
                                 num_fewshot=cfg.eval.num_fewshot, **sampling)
    return tasks + builtin, groups


def run_evaluation(model, tokenizer, tasks, groups: list[str], cfg: RunConfig, out_dir: Path, reporter: Reporter,
                   label: str) -> dict:
    from tunescope.evaluate import evaluate
    from tunescope.evaluate.enginepath import engine_lines

    reporter.stage(f"evaluate {label}")
    results = evaluate(model, tokenizer, tasks, limit=cfg.eval.limit, batch_size=cfg.eval.batch_size,
                       max_new_tokens=cfg.eval.max_new_tokens, out_dir=out_dir, groups=groups, engine=cfg.eval.engine,
                       progress=lambda t, done, total: reporter.progress(f"{label} · {t}", done, total))
    for line in engine_lines(results):
        reporter.message(f"{label} {line}")
    return results


def _manifest(cfg: RunConfig, data_info: dict, loaded) -> dict:
    return {"name": cfg.name, "status": "running", "started": now_iso(), "seed": cfg.seed, "versions": library_versions(),
            "git_sha": git_sha(), "device": str(loaded.device), "dtype": str(loaded.dtype).replace("torch.", ""),
            "dtype_choice": loaded.dtype_choice.record() if getattr(loaded, "dtype_choice", None) else None,
            "model": {"name": cfg.model.name, "source": loaded.source}, "data": data_info}


def training_tasks(cfg: RunConfig, prep: Prepared) -> list:
    """The tasks scored during training with their fixed item subsets ([] when off); checked before the model loads."""
    from tunescope.evaluate.during_training import load_training_tasks

    if not cfg.eval.during_training.enabled:
        return []
    heldout = heldout_task(cfg, prep.heldout_rows) if "heldout" in cfg.eval.during_training.tasks else None
    return load_training_tasks(cfg, heldout)


def _train_stage(cfg: RunConfig, loaded, prep: Prepared, run_path: Path, reporter: Reporter,
                 resume: bool = False, scored: list | None = None) -> tuple[object, dict]:
    from tunescope.data.prompting import encode_dataset
    from tunescope.evaluate.during_training import build_scorer
    from tunescope.train.distributed import current
    from tunescope.train.session import fit

    tok = loaded.tokenizer
    p = cfg.prompt
    kw = dict(template=p.template, use_chat_template=p.use_chat_template, train_on_prompt=p.train_on_prompt,
              max_length=p.max_length, overflow=p.overflow)
    train_set, train_stats = encode_dataset(prep.train_rows, tok, **kw)
    val_set, val_stats = encode_dataset(prep.val_rows, tok, **kw)
    if not train_set:
        raise UserError(f"no training examples left after encoding ({train_stats.dropped} dropped as longer than "
                        f"prompt.max_length={p.max_length})", where="prompt.max_length")
    reporter.stage("train")
    # fit() builds the adapter, writes the setup record (adding parameter counts), resumes from
    # run_path/checkpoints when asked, and writes metrics.jsonl and adapter/.
    setup = {"train_examples": len(train_set), "val_examples": len(val_set),
             "truncated": train_stats.truncated + val_stats.truncated,
             "dropped": train_stats.dropped + val_stats.dropped, "overflow": p.overflow}
    scorer = build_scorer(cfg, scored, tok, run_path) if scored else None
    model, summary = fit(cfg, loaded, train_set, val_set, run_path, resume=resume, setup=setup, scorer=scorer,
                         progress=lambda done, total: reporter.progress("train", done, total))
    if current().is_main:  # under a distributed launch, only rank 0 writes the run folder
        _record_example_losses(model, prep, train_set, train_stats.dropped_rows, cfg, loaded, run_path)
    return model, summary


def _record_example_losses(model, prep: Prepared, train_set, dropped_rows, cfg: RunConfig, loaded, run_path: Path) -> None:
    """Write train_examples.jsonl: each training example with the final model's loss on it (capped)."""
    from tunescope.runio import write_jsonl
    from tunescope.train.example_loss import per_example_losses

    dropped = set(dropped_rows)
    kept_rows = [r for i, r in enumerate(prep.train_rows) if i not in dropped]
    n = min(len(train_set), MAX_EXAMPLE_LOSSES)
    losses = per_example_losses(model, train_set[:n], cfg.training.batch_size * 2, loaded.tokenizer.pad_token_id,
                                loaded.device)
    write_jsonl(run_path / rr.TRAIN_EXAMPLES,
                ({"index": i, "question": kept_rows[i]["question"], "answer": kept_rows[i]["answer"],
                  "loss": losses[i] if i < n else None} for i in range(len(train_set))))


def _resumable(rd: RunDir, cfg: RunConfig, reporter: Reporter) -> bool:
    """True when `rd` has an interrupted run with this config to continue; False when there is none."""
    if not rd.path.is_dir():
        if rd.final.is_dir():
            raise UserError(f"run '{rd.final}' is already complete; nothing to resume", where="--resume")
        reporter.message(f"no interrupted run at {rd.path}; starting a new one")
        return False
    saved = rd.path / rr.CONFIG
    if saved.is_file() and saved.read_text(encoding="utf-8") != dump_config(cfg):
        raise UserError("the config differs from the interrupted run's; resume with the same config (and --set "
                        "overrides), or start a new run", where=str(saved))
    return True


def run(cfg: RunConfig, *, overwrite: bool = False, reporter: Reporter | None = None,
        resume: bool = False) -> Path | None:
    """The whole pipeline. Returns the finished run directory (None on the other processes of a
    distributed launch, which only train).

    `resume` continues an interrupted run in its `.<name>.partial/` folder: a finished base evaluation
    is kept and training continues from its latest checkpoint (training.checkpoint_every).
    """
    from tunescope.models import load_model, pick_device
    from tunescope.train.adapters import quantization_config_for
    from tunescope.train.distributed import current

    reporter = reporter or Reporter()
    # Under `accelerate launch` this joins the process group and selects this process's GPU first.
    dist = current()
    rd = RunDir(cfg.output_dir, cfg.name)
    resuming = resume and _resumable(rd, cfg, reporter)
    started = time.perf_counter()
    reporter.stage("prepare data")
    prep = prepare_data(cfg)
    tasks, groups = build_tasks(cfg, prep.heldout_rows) if cfg.eval.tasks else ([], [])
    scored = training_tasks(cfg, prep)
    reporter.stage("load model")
    # QLoRA: the base is loaded in 4-bit NF4 (CUDA only; elsewhere a UserError naming the alternative).
    quantization = quantization_config_for(cfg.training, pick_device(cfg.device))
    loaded = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.device, revision=cfg.model.revision,
                        trust_remote_code=cfg.model.trust_remote_code, cache_dir=cfg.model.cache_dir,
                        quantization_config=quantization)
    if not dist.is_main:
        # The other processes of a distributed launch only train; rank 0 writes, evaluates and reports.
        _train_stage(cfg, loaded, prep, rd.path, reporter, resume=resuming, scored=scored)
        return None
    if not resuming:
        rd.begin(overwrite)
    try:
        write_text_atomic(rd.path / rr.CONFIG, dump_config(cfg))
        manifest = _manifest(cfg, prep.info, loaded)
        if resuming and (rd.path / rr.MANIFEST).is_file():
            before = rr.read_manifest(rd.path)
            manifest.update(started=before.started, resumed=[*before.resumed, now_iso()])
        write_json(rd.path / rr.MANIFEST, manifest)
        timings = {}
        eval_dir = rd.path / rr.EVAL_DIR
        base_done = resuming and (eval_dir / "base" / rr.RESULTS).is_file()
        if tasks and cfg.eval.evaluate_base and not base_done:
            t0 = time.perf_counter()
            run_evaluation(loaded.model, loaded.tokenizer, tasks, groups, cfg, eval_dir / "base", reporter, "base")
            timings["eval_base_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model, _ = _train_stage(cfg, loaded, prep, rd.path, reporter, resume=resuming, scored=scored)
        timings["train_s"] = time.perf_counter() - t0
        if tasks:
            t0 = time.perf_counter()
            run_evaluation(model, loaded.tokenizer, tasks, groups, cfg, eval_dir / "tuned", reporter, "tuned")
            timings["eval_tuned_s"] = time.perf_counter() - t0
        manifest.update(status="complete", finished=now_iso(), timings=timings,
                        wall_s=round(time.perf_counter() - started, 2))
        write_json(rd.path / rr.MANIFEST, manifest)
        reporter.stage("report")
        write_report(rd.path, register=False)
    except BaseException:
        rd.abandon()
        raise
    final = rd.finish()
    register_run(final, reporter)
    return final


def write_report(run_dir: str | Path, *, register: bool = True, overrides: list[str] | None = None,
                 reporter: Reporter | None = None) -> dict[str, Path]:
    """(Re)build a run's report; ``overrides`` (``report.key=value``) change only the report settings.
    With ``register``, the run is also added to (or refreshed in) the run registry."""
    from tunescope.analysis.summary import analyse_run
    from tunescope.report import render_all

    record = rr.open_run(run_dir)
    if overrides:
        bad = [o for o in overrides if not o.strip().startswith("report.")]
        if bad:
            raise UserError(f"only report.* settings can change when re-reporting, not '{bad[0]}' "
                            "(the other keys describe how the run was made)", where="--set")
        record = record.reconfigured(overrides)
    data = analyse_run(record)
    paths = render_all(data, Path(run_dir))
    if register:
        register_run(Path(run_dir), reporter)
    return paths


def register_run(run_dir: Path, reporter: Reporter | None = None) -> str | None:
    """Add a finished run to the local registry. A registry problem is reported, never fatal to the run."""
    import logging
    import sqlite3

    from tunescope import registry

    try:
        return registry.register_run(run_dir)
    except (sqlite3.Error, OSError, UserError) as e:
        msg = f"warning: run not added to the registry {registry.registry_path()}: {e}"
        logging.getLogger(__name__).warning(msg)
        if reporter is not None:
            reporter.message(msg)
        return None


def compare(run_dirs: list[str | Path], *, baseline: str | None = None, output: str | Path | None = None,
            alpha: float = 0.05, n_boot: int = 10000) -> dict[str, Path]:
    """One report comparing the evaluations of several runs (base and tuned columns) with paired tests."""
    from tunescope.compare import compare_runs
    from tunescope.report.render import render_compare

    if not run_dirs:
        raise UserError("name at least one run directory", where="RUNS")
    runs = [rr.open_run_or_evaluation(d) for d in run_dirs]
    data = compare_runs(runs, baseline, alpha=alpha, n_boot=n_boot)
    if output is None:
        first = Path(run_dirs[0])
        slug = "-vs-".join(r.name for r in runs)[:80].strip("-.") or "runs"
        output = first.parent / f"compare-{slug}"
    return render_compare(data, Path(output))


def runs_list() -> list[dict]:
    """Registered runs, newest first (see ``tunescope.registry``)."""
    from tunescope import registry

    return registry.list_runs()


def runs_show(ref: str) -> dict:
    from tunescope import registry

    return registry.get_run(ref)


def runs_leaderboard(task: str, metric: str | None = None, label: str | None = None) -> dict:
    from tunescope import registry

    return registry.leaderboard(task, metric=metric, label=label)
