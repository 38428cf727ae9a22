"""The run recipe: base eval → train → tuned eval → report, and the report and registry of a run.

`run` reads one `RunConfig` and writes one run directory (`demo` is `run` on the packaged demo
config). The CLI calls these; they call the stage modules (data, models, train, evaluate, analysis)
and hand plain dictionaries to report. The other recipes are `recipes.evaluate_model` (`tunescope eval`) and
`recipes.compare` (`tunescope compare`); what a run prepares before its model loads is `recipes.inputs`.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import nullcontext
from pathlib import Path

from tunescope.config.loading import dump_config, load_config, only_report_keys
from tunescope.config.run_config import RunConfig
from tunescope.core.errors import RunInterrupted, UserError, check_writable_dir, storage_error
from tunescope.recipes.contamination import annotate_results, check_run
from tunescope.recipes.inputs import (
    EncodedData,
    Prepared,
    build_tasks,
    encode_data,
    prepare_data,
    training_tasks,
)
from tunescope.store import run_folder as rr
from tunescope.store.fileio import RunDir, git_sha, library_versions, now_iso, write_json, write_text_atomic
from tunescope.store.lock import run_lock
from tunescope.store.replace_guard import check_replaceable_run

# Per-example losses cost one forward pass each; beyond this many the report samples are enough.
MAX_EXAMPLE_LOSSES = 512
DEMO_CONFIG = Path(__file__).parents[1] / "configs" / "demo.yaml"


class ProgressSink:
    """Where a recipe tells how far it got; the CLI draws it with rich, tests use this silent default."""

    def stage(self, name: str) -> None: ...

    def advance(self, what: str, done: int, total: int) -> None: ...

    def message(self, text: str) -> None: ...


def run_evaluation(model, tokenizer, tasks, groups: list[str], cfg: RunConfig, out_dir: Path,
                   progress: ProgressSink, label: str) -> dict:
    from tunescope.evaluate import evaluate
    from tunescope.evaluate.enginepath import engine_lines

    progress.stage(f"evaluate {label}")
    results = evaluate(model, tokenizer, tasks, limit=cfg.eval.limit, batch_size=cfg.eval.batch_size,
                       max_new_tokens=cfg.eval.max_new_tokens, out_dir=out_dir, groups=groups,
                       engine=cfg.eval.engine,
                       progress=lambda t, done, total: progress.advance(f"{label} · {t}", done, total))
    for line in engine_lines(results):
        progress.message(f"{label} {line}")
    return results


def _manifest(cfg: RunConfig, data_info: dict, loaded) -> dict:
    return {"name": cfg.name, "status": "running", "started": now_iso(), "seed": cfg.seed,
            "versions": library_versions(), "git_sha": git_sha(), "device": str(loaded.device),
            "dtype": str(loaded.dtype).replace("torch.", ""),
            "dtype_choice": loaded.dtype_choice.record() if getattr(loaded, "dtype_choice", None) else None,
            "model": {"name": cfg.model.name, "source": loaded.source}, "data": data_info,
            # Who writes the folder: `tunescope serve` tells a run still training from one whose process is
            # gone.
            "process": {"host": socket.gethostname(), "pid": os.getpid()}}


def _train_stage(cfg: RunConfig, loaded, prep: Prepared, enc: EncodedData, run_path: Path,
                 progress: ProgressSink, resume: bool = False,
                 scored: list | None = None) -> tuple[object, dict]:
    from tunescope.evaluate.during_training import build_scorer
    from tunescope.train.distributed import current
    from tunescope.train.session import fit

    p = cfg.prompt
    train_set, train_stats, val_set, val_stats = enc.train_set, enc.train_stats, enc.val_set, enc.val_stats
    progress.stage("train")
    # fit() builds the adapter, writes the setup record (adding parameter counts), resumes from
    # run_path/checkpoints when asked, and writes metrics.jsonl and adapter/.
    setup = {"train_examples": len(train_set), "val_examples": len(val_set),
             "truncated": train_stats.truncated + val_stats.truncated,
             "dropped": train_stats.dropped + val_stats.dropped, "overflow": p.overflow}
    scorer = build_scorer(cfg, scored, loaded.tokenizer, run_path) if scored else None
    model, summary = fit(cfg, loaded, train_set, val_set, run_path, resume=resume, setup=setup, scorer=scorer,
                         progress=lambda done, total: progress.advance("train", done, total))
    if current().is_main:  # under a distributed launch, only rank 0 writes the run folder
        _record_example_losses(model, prep, train_set, train_stats.dropped_rows, cfg, loaded, run_path)
    return model, summary


def _record_example_losses(model, prep: Prepared, train_set, dropped_rows, cfg: RunConfig, loaded,
                           run_path: Path) -> None:
    """Write train_examples.jsonl: each training example with the final model's loss on it (capped)."""
    from tunescope.store.fileio import write_jsonl
    from tunescope.train.example_loss import per_example_losses

    dropped = set(dropped_rows)
    kept_rows = [r for i, r in enumerate(prep.train_rows) if i not in dropped]
    n = min(len(train_set), MAX_EXAMPLE_LOSSES)
    losses = per_example_losses(model, train_set[:n], cfg.training.batch_size * 2,
                                loaded.tokenizer.pad_token_id, loaded.device)
    write_jsonl(run_path / rr.TRAIN_EXAMPLES,
                ({"index": i, "question": kept_rows[i]["question"], "answer": kept_rows[i]["answer"],
                  "loss": losses[i] if i < n else None} for i in range(len(train_set))))


def _resumable(rd: RunDir, cfg: RunConfig, progress: ProgressSink) -> bool:
    """True when `rd` has an interrupted run with this config to continue; False when there is none."""
    if not rd.path.is_dir():
        if rd.final.is_dir():
            raise UserError(f"run '{rd.final}' is already complete; nothing to resume", where="--resume")
        progress.message(f"no interrupted run at {rd.path}; starting a new one")
        return False
    saved = rd.path / rr.CONFIG
    if saved.is_file() and saved.read_text(encoding="utf-8") != dump_config(cfg):
        raise UserError("the config differs from the interrupted run's; resume with the same config (and "
                        "--set overrides), or start a new run", where=str(saved))
    return True


class BaseEvalCache:
    """Where a base evaluation can be shared between runs of the same base model (an experiment grid
    evaluates each base model once). `lookup` returns (key, folder of a finished evaluation or None);
    `store` keeps a run's fresh base evaluation under that key. This default shares nothing."""

    def lookup(self, cfg: RunConfig, tasks: list, dtype: str, device: str) -> tuple[str | None, Path | None]:
        return None, None

    def store(self, key: str, folder: Path, run_name: str) -> None: ...


def _base_evaluation(cache: BaseEvalCache | None, cfg: RunConfig, tasks, groups, loaded, out: Path,
                     progress: ProgressSink) -> dict:
    """Evaluate the base model into `out`, or copy a cached evaluation of the same model, revision,
    dtype, task settings and items. Returns what the manifest records about it."""
    import shutil

    dtype = str(loaded.dtype).replace("torch.", "")
    key, cached = cache.lookup(cfg, tasks, dtype, str(loaded.device)) if cache is not None else (None, None)
    if cached is not None:
        progress.stage("base evaluation: reusing the cached one")
        shutil.copytree(cached, out, dirs_exist_ok=True)
        return {"reused": True, "key": key, "from": str(cached)}
    run_evaluation(loaded.model, loaded.tokenizer, tasks, groups, cfg, out, progress, "base")
    if cache is not None and key is not None:
        cache.store(key, out, cfg.name)
    return {"reused": False, "key": key}


def run(cfg: RunConfig, *, overwrite: bool = False, progress: ProgressSink | None = None,
        resume: bool = False, base_eval_cache: BaseEvalCache | None = None,
        manifest_extra: dict | None = None, register: bool = True) -> Path | None:
    """The whole pipeline. Returns the finished run directory (None on the other processes of a
    distributed launch, which only train).

    `resume` continues an interrupted run in its `.<name>.partial/` folder: a finished base evaluation
    is kept and training continues from its latest checkpoint (training.checkpoint_every).
    `base_eval_cache` may supply the base evaluation instead of running it (see `BaseEvalCache`);
    `manifest_extra` adds fields to manifest.json (a grid run records its grid and cell there).
    `register=False` leaves the registry to the caller (a grid registers its cells from the driver).
    """
    from tunescope.train.distributed import current

    progress = progress or ProgressSink()
    # Under `accelerate launch` this joins the process group and selects this process's GPU first.
    dist = current()
    rd = RunDir(cfg.output_dir, cfg.name)
    # Everything that can be checked without the model is checked before it loads: where the run is
    # written, the data, the tasks, the tokenised examples.
    check_writable_dir(rd.root, where="output_dir")
    # One writer per run folder: held from here until the run is renamed into place and registered.
    with run_lock(rd.final, on_stale=progress.message) if dist.is_main else nullcontext():
        return _run_locked(cfg, rd, dist, overwrite=overwrite, progress=progress, resume=resume,
                           base_eval_cache=base_eval_cache, manifest_extra=manifest_extra, register=register)


def _load_for_training(cfg: RunConfig, prep):
    """(the tokenised examples, the loaded model): the tokenizer first, then the model in its dtype."""
    from tunescope.models import load_model, pick_device
    from tunescope.models.loading import prepare_tokenizer
    from tunescope.train.adapters import quantization_config_for

    # QLoRA: the base is loaded in 4-bit NF4 (CUDA only; elsewhere a UserError naming the alternative).
    quantization = quantization_config_for(cfg.training, pick_device(cfg.device))
    tokenizer = prepare_tokenizer(cfg.model.name, revision=cfg.model.revision,
                                  trust_remote_code=cfg.model.trust_remote_code,
                                  cache_dir=cfg.model.cache_dir)
    enc = encode_data(cfg, tokenizer, prep)
    loaded = load_model(cfg.model.name, dtype=cfg.model.dtype, device=cfg.device, revision=cfg.model.revision,
                        trust_remote_code=cfg.model.trust_remote_code, cache_dir=cfg.model.cache_dir,
                        gguf_file=cfg.model.gguf_file, quantization_config=quantization, tokenizer=tokenizer)
    return enc, loaded


def _run_locked(cfg: RunConfig, rd: RunDir, dist, *, overwrite: bool, progress: ProgressSink, resume: bool,
                base_eval_cache: BaseEvalCache | None, manifest_extra: dict | None,
                register: bool) -> Path | None:
    if rd.final.exists() and not overwrite and not (resume and not rd.path.is_dir()):
        # refuses, naming the existing run (a resume never replaces a finished run silently)
        rd.begin(overwrite)
    if overwrite and rd.final.exists():
        check_replaceable_run(rd.final)
    resuming = resume and _resumable(rd, cfg, progress)
    started = time.perf_counter()
    progress.stage("prepare data")
    prep = prepare_data(cfg)
    tasks, groups = build_tasks(cfg, prep.heldout_rows) if cfg.eval.tasks else ([], [])
    scored = training_tasks(cfg, prep)
    progress.stage("check contamination")
    contamination = check_run(cfg, prep, tasks)
    progress.stage("load model")
    enc, loaded = _load_for_training(cfg, prep)
    if not dist.is_main:
        # The other processes of a distributed launch only train; rank 0 writes, evaluates and reports.
        _train_stage(cfg, loaded, prep, enc, rd.path, progress, resume=resuming, scored=scored)
        return None
    if not resuming:
        rd.begin(overwrite)
    try:
        write_text_atomic(rd.path / rr.CONFIG, dump_config(cfg))
        manifest = {**_manifest(cfg, prep.info, loaded), **(manifest_extra or {})}
        if resuming and (rd.path / rr.MANIFEST).is_file():
            before = rr.read_manifest(rd.path)
            manifest.update(started=before.started, resumed=[*before.resumed, now_iso()])
            if before.base_eval is not None:
                manifest["base_eval"] = before.base_eval.as_dict()
        write_json(rd.path / rr.MANIFEST, manifest)
        write_json(rd.path / rr.CONTAMINATION, contamination)
        timings = {"contamination_s": contamination["seconds"]}
        eval_dir = rd.path / rr.EVAL_DIR
        base_done = resuming and (eval_dir / "base" / rr.RESULTS).is_file()
        if tasks and cfg.eval.evaluate_base and not base_done:
            t0 = time.perf_counter()
            manifest["base_eval"] = _base_evaluation(base_eval_cache, cfg, tasks, groups, loaded,
                                                     eval_dir / "base", progress)
            write_json(rd.path / rr.MANIFEST, manifest)
            timings["eval_base_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model, _ = _train_stage(cfg, loaded, prep, enc, rd.path, progress, resume=resuming, scored=scored)
        timings["train_s"] = time.perf_counter() - t0
        if tasks:
            t0 = time.perf_counter()
            run_evaluation(model, loaded.tokenizer, tasks, groups, cfg, eval_dir / "tuned", progress, "tuned")
            annotate_results(eval_dir / "tuned" / rr.RESULTS, contamination)
            timings["eval_tuned_s"] = time.perf_counter() - t0
        manifest.update(status="complete", finished=now_iso(), timings=timings,
                        wall_s=round(time.perf_counter() - started, 2))
        write_json(rd.path / rr.MANIFEST, manifest)
        progress.stage("report")
        write_report(rd.path, register=False)
    except BaseException as e:
        rd.abandon("interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, RunInterrupted):
            raise RunInterrupted(rd.path) from None
        if isinstance(e, Exception) and (err := storage_error(e, rd.path)) is not None:
            # The folder stays consistent (written atomically) and is kept, so the run can continue.
            raise UserError(f"{str(err).removeprefix(f'{err.where}: ')}; the unfinished run is kept in "
                            f"{rd.path} (continue it with --resume)", where=err.where) from None
        raise
    try:
        final = rd.finish()
    except OSError as e:
        raise storage_error(e, rd.path) or e from None
    if register:
        register_or_warn(final, progress)
    return final


def write_report(run_dir: str | Path, *, register: bool = True, overrides: list[str] | None = None,
                 progress: ProgressSink | None = None) -> dict[str, Path]:
    """(Re)build a run's report; ``overrides`` (``report.key=value``) change only the report settings.
    With ``register``, the run is also added to (or refreshed in) the run registry."""
    # One writer per run folder: a report is not rebuilt while the run (or another report) writes it.
    with run_lock(run_dir, existing_only=True, on_stale=progress.message if progress else None):
        return _write_report_locked(Path(run_dir), register=register, overrides=overrides, progress=progress)


def _write_report_locked(run_dir: Path, *, register: bool, overrides: list[str] | None,
                         progress: ProgressSink | None) -> dict[str, Path]:
    from tunescope.analysis.summary import analyse_run
    from tunescope.report import render_all

    record = rr.open_run(run_dir)
    # The report is written into the run folder: refuse an unwritable one before the analysis runs.
    check_writable_dir(Path(run_dir), where=str(run_dir))
    if overrides:
        only_report_keys(overrides, "when re-reporting")
        record = record.reconfigured(overrides)
    data = analyse_run(record)
    paths = render_all(data, Path(run_dir))
    if register:
        register_or_warn(Path(run_dir), progress)
    return paths


def register_or_warn(run_dir: Path, progress: ProgressSink | None = None) -> str | None:
    """Add a finished run to the local registry. A registry problem is reported, never fatal to the run."""
    import logging
    import sqlite3

    from tunescope.store import registry as run_registry

    try:
        return run_registry.register_run(run_dir)
    except (sqlite3.Error, OSError, UserError) as e:
        msg = f"warning: run not added to the registry {run_registry.registry_path()}: {e}"
        logging.getLogger(__name__).warning(msg)
        if progress is not None:
            progress.message(msg)
        return None


def demo(overrides: list[str] | None = None, *, overwrite: bool = True,
         progress: ProgressSink | None = None) -> Path:
    """The offline demo: the packaged demo config (configs/demo.yaml) run end to end."""
    cfg = load_config(DEMO_CONFIG, overrides or [])
    return run(cfg, overwrite=overwrite, progress=progress)
