"""Fault injection, second round: one writer per run folder, `--overwrite` and `export` that never destroy a
finished run, user text never read as console markup, bounded YAML, data values that are not text, options
checked before the model loads, `grid` with `run`'s error handling, and signals.

The table cases run through typer's runner like those of test_user_errors.py (same `Case`, same checks: one
line, exit code 2, no traceback); the integrity and signal cases start real `tunescope` processes, two at a
time where two writers are the fault.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_user_errors import (
    BASE_CONFIG,
    GOOD_JSONL,
    GOOD_ROWS,
    Case,
    adapter_folder,
    check,
    cli_env,
    complete_run,
    data_case,
    eval_case,
    fill,
    invoke,
    isolated,  # noqa: F401 - the fixture
    merged,
    model_case,
    partial_run,
    prepare,
    run_case,
    with_run,
    write,
)

MARK = "[/x]"  # rich's closing-tag syntax: crashes a console that reads it as markup
BOMB = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n")
GRID = {"name": "g", "base": "c.yaml", "axes": {"training.lora.r": [4]}, "seeds": [1], "output_dir": "runs"}


def grid_files(grid: dict | None = None, cfg: dict | None = None) -> dict[str, str]:
    return {"c.yaml": yaml.safe_dump(merged(BASE_CONFIG, cfg or {}), sort_keys=False),
            "g.yaml": yaml.safe_dump({**GRID, **(grid or {})}, sort_keys=False)}


def grid_case(id: str, extra: list[str], words: tuple[str, ...], grid: dict | None = None,
              cfg: dict | None = None, files: dict | None = None, **kw) -> Case:
    return Case(id=id, argv=["grid", "@TMP@/g.yaml", *extra], words=words,
                files={**grid_files(grid, cfg), **(files or {})}, **kw)


def stale_lock(relative: str, pid: int = 999_999, host: str = "gone-host"):
    """A lock file left by a process that died without releasing it."""
    def setup(tmp: Path, model: Path) -> None:
        write(tmp / relative, json.dumps({"pid": pid, "host": host, "command": "tunescope run"}))
    return setup


def both(*setups):
    def setup(tmp: Path, model: Path) -> None:
        for s in setups:
            s(tmp, model)
    return setup


def marked_run(tmp: Path, model: Path) -> None:
    """A finished run in a folder whose path holds console markup: @TMP@/a[/x]."""
    run = complete_run(tmp, model)
    (tmp / "a[").mkdir()
    run.rename(tmp / f"a{MARK}")


def registered_marked_run(tmp: Path, model: Path) -> None:
    from tunescope.store import registry as run_registry

    marked_run(tmp, model)
    run_registry.register_run(tmp / f"a{MARK}")


def make_dir(relative: str):
    return lambda tmp, model: (tmp / relative).mkdir(parents=True, exist_ok=True)


def symlink_loop(adapter: Path) -> None:
    os.symlink("loop", adapter / "loop")


def pickled_model(tmp: Path, model: Path) -> None:
    dst = tmp / "m"
    shutil.copytree(model, dst)
    _pickle_weights(dst / "model.safetensors", dst / "pytorch_model.bin")


def _pickle_weights(safetensors: Path, pickled: Path) -> None:
    """Weights pickled with an object beside the tensors, which a safe loader refuses to unpickle."""
    import argparse

    import torch
    from safetensors.torch import load_file

    weights = load_file(safetensors)
    safetensors.unlink()
    torch.save({**weights, "options": argparse.Namespace(lr=1)}, pickled)


def pickled_adapter(adapter: Path) -> None:
    _pickle_weights(adapter / "adapter_model.safetensors", adapter / "adapter_model.bin")


def parquet_with_null(tmp: Path, model: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [*GOOD_ROWS[:3], {"question": "q", "answer": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "d.parquet")


CSV_ROWS = "question,answer\n" + "".join(f'"{r["question"]}","{r["answer"]}"\n' for r in GOOD_ROWS[:3])
BOM = "\ufeff"

CASES: list[Case] = [
    # --- integrity: --overwrite and export never remove what tunescope did not write ------------------------
    Case(id="export-output-is-the-runs-parent", argv=["export", "@TMP@/run", "-o", "@TMP@", "--overwrite"],
         setup=with_run(), words=("contains the run",), exists=("run/manifest.json", "run/adapter")),
    Case(id="export-output-is-the-run", argv=["export", "@TMP@/run", "-o", "@TMP@/run", "--overwrite"],
         setup=with_run(), words=("contains the run",), exists=("run/manifest.json",)),
    Case(id="export-output-inside-the-run", argv=["export", "@TMP@/run", "-o", "@TMP@/run/adapter/x"],
         setup=with_run(), words=("inside the run",), absent=("run/adapter/x",)),
    Case(id="export-overwrite-foreign-folder", argv=["export", "@TMP@/run", "-o", "@TMP@/out", "--overwrite"],
         setup=with_run(), files={"out/thesis.tex": "mine"}, words=("not a tunescope export",),
         exists=("out/thesis.tex",)),
    Case(id="export-overwrite-earlier-export", argv=["export", "@TMP@/run", "-o", "@TMP@/out", "--overwrite"],
         setup=with_run(), files={"out/tunescope_export.json": "{}"}, code=0, words=("adapter:",),
         exists=("out/adapter_model.safetensors",)),
    Case(id="export-overwrite-empty-folder", argv=["export", "@TMP@/run", "-o", "@TMP@/out", "--overwrite"],
         setup=both(with_run(), make_dir("out")), code=0, exists=("out/adapter_config.json",)),
    Case(id="export-default-folder-inside-run", argv=["export", "@TMP@/run"], setup=with_run(), code=0,
         exists=("run/export/adapter/adapter_config.json",)),
    run_case(id="run-overwrite-foreign-folder", sets=(), files={"runs/t/notes.txt": "mine"},
             words=("already exists",), exists=("runs/t/notes.txt",), before_load=True),
    Case(id="run-overwrite-foreign-folder-flag", argv=["run", "@CFG@", "--overwrite"], cfg={},
         files={"runs/t/notes.txt": "mine"}, words=("not a tunescope run", "--overwrite"),
         exists=("runs/t/notes.txt",), before_load=True),
    Case(id="run-overwrite-file-in-place", argv=["run", "@CFG@", "--overwrite"], cfg={},
         files={"runs/t": "mine"}, words=("not a run folder",), exists=("runs/t",), before_load=True),
    Case(id="run-resume-beside-a-finished-run", argv=["run", "@CFG@", "--resume"], cfg={},
         setup=both(partial_run, lambda tmp, m: complete_run(tmp / "runs", m, name="t")),
         words=("already exists", "--overwrite"), exists=("runs/t/manifest.json", "runs/.t.partial"),
         before_load=True),
    Case(id="report-takes-over-a-stale-lock", argv=["report", "@TMP@/run"],
         setup=both(with_run(), stale_lock(".run.lock")), code=0, words=("stale lock", "999999", "gone-host"),
         absent=(".run.lock",)),
    Case(id="export-takes-over-a-stale-lock", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=both(with_run(), stale_lock(".run.lock")), code=0, words=("stale lock", "999999"),
         exists=("out/adapter_config.json",), absent=(".run.lock",)),
    Case(id="train-takes-over-a-stale-lock", argv=["train", "@CFG@"], cfg={},
         setup=stale_lock("runs/.t.lock"), code=0, words=("stale lock", "999999"),
         exists=("runs/t/manifest.json",), absent=("runs/.t.lock",)),
    Case(id="report-missing-run-leaves-no-lock", argv=["report", "@TMP@/nope"], words=("nope",),
         absent=(".nope.lock",)),
    Case(id="export-missing-run-leaves-no-lock", argv=["export", "@TMP@/nope", "-o", "@TMP@/out"],
         words=("nope",), absent=(".nope.lock", "out")),
    Case(id="export-symlink-loop-in-adapter", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(lambda r: symlink_loop(r / "adapter")), words=("adapter",),
         absent=("out", ".out.partial")),
    # --- console markup: user text is printed as it is ------------------------------------------------------
    Case(id="markup-report", argv=["report", f"@TMP@/a{MARK}"], setup=marked_run, code=0, words=(MARK,)),
    Case(id="markup-runs-list", argv=["runs", "list"], setup=registered_marked_run, code=0,
         words=("1 registered run",)),
    Case(id="markup-runs-show", argv=["runs", "show", f"@TMP@/a{MARK}"], setup=registered_marked_run, code=0,
         words=("synthetic-math",)),
    Case(id="markup-export", argv=["export", f"@TMP@/a{MARK}", "-o", f"@TMP@/o{MARK}"], setup=marked_run,
         code=0, words=(f"o{MARK}",), exists=(f"o{MARK}/adapter_config.json",)),
    Case(id="markup-compare", argv=["compare", f"@TMP@/a{MARK}", "-o", f"@TMP@/c{MARK}"], setup=marked_run,
         code=0, words=(f"c{MARK}",)),
    Case(id="markup-train", argv=["train", "@CFG@"], cfg={"output_dir": f"@TMP@/r{MARK}"}, code=0,
         words=(f"r{MARK}",), exists=(f"r{MARK}/t/manifest.json",)),
    Case(id="markup-train-resume", argv=["train", "@CFG@", "--resume"], cfg={"output_dir": f"@TMP@/r{MARK}"},
         code=0, words=("no interrupted run", f"r{MARK}"), exists=(f"r{MARK}/t/manifest.json",)),
    Case(id="markup-grid-dry-run", argv=["grid", f"@TMP@/g{MARK}/g.yaml", "--dry-run"], code=0, words=(MARK,),
         files={f"g{MARK}/{k}": v for k, v in grid_files().items()}),
    Case(id="markup-error-line", argv=["run", f"@TMP@/n{MARK}/c.yaml"], words=(f"n{MARK}", "not found")),
    eval_case("markup-eval-output", ["--output", f"@TMP@/e{MARK}"], (), code=0,
              exists=(f"e{MARK}/results.json",)),
    Case(id="markup-in-a-task-name", argv=["eval", "-m", "x/y", "-t", f"gsm8k{MARK}"],
         words=(MARK, "unknown task"), before_load=True),
    # --- YAML and long lines: bounded -----------------------------------------------------------------------
    Case(id="yaml-alias-bomb-run", argv=["run", "@CFG@"], files={"c.yaml": "name: t\n" + BOMB},
         words=("c.yaml", "aliases expand"), before_load=True, absent=("runs",)),
    Case(id="yaml-alias-bomb-train", argv=["train", "@CFG@"], files={"c.yaml": BOMB},
         words=("aliases expand",), before_load=True),
    Case(id="yaml-alias-bomb-grid", argv=["grid", "@TMP@/g.yaml", "--dry-run"],
         files={**grid_files(), "g.yaml": BOMB}, words=("g.yaml", "aliases expand"), before_load=True),
    Case(id="yaml-alias-bomb-grid-base", argv=["grid", "@TMP@/g.yaml", "--dry-run"],
         files={**grid_files(), "c.yaml": BOMB}, words=("c.yaml", "aliases expand"), before_load=True),
    Case(id="yaml-recursive-alias", argv=["run", "@CFG@"], files={"c.yaml": "name: t\nx: &a [1, *a]\n"},
         words=("c.yaml", "refers to"), before_load=True),
    Case(id="yaml-alias-bomb-in-set", argv=["run", "@CFG@", "--set",
                                            "eval.tasks=" + "[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,"
                                            "*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], "
                                            "[*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,"
                                            "*c,*c,*c,*c,*c,*c]]"],
         cfg={}, words=("--set eval.tasks", "aliases expand"), before_load=True),
    Case(id="yaml-few-aliases-are-fine", argv=["grid", "@TMP@/g.yaml", "--dry-run"], code=0,
         words=("estimated total",), files={**grid_files(), "g.yaml": (
             "name: g\nbase: c.yaml\nset: {training.max_steps: &v 2, training.eval_every: *v}\n"
             "axes: {training.lora.r: [4]}\nseeds: [1]\noutput_dir: runs\n")}),
    Case(id="error-line-capped", argv=["run", "@CFG@"],
         files={"c.yaml": "name: t\n" + "".join(f"{c * 1000}: 1\n" for c in "klmnopqrstuvw")},
         words=("more characters",), before_load=True),
    # --- data values that are not text ----------------------------------------------------------------------
    data_case("data-answer-nan", "d.jsonl", GOOD_JSONL + '{"question": "q", "answer": NaN}\n',
              ("d.jsonl:25", "answer", "nan")),
    data_case("data-answer-null", "d.jsonl", GOOD_JSONL + '{"question": "q", "answer": null}\n',
              ("d.jsonl:25", "answer", "null")),
    data_case("data-question-infinity", "d.jsonl", '{"question": Infinity, "answer": "1"}\n',
              ("d.jsonl:1", "question")),
    data_case("data-json-answer-nan", "d.json", '[{"question": "q", "answer": NaN}]',
              ("d.json: record 1", "answer")),
    run_case({"data": {"source": "@TMP@/d.parquet"}}, id="data-parquet-answer-null", setup=parquet_with_null,
             words=("d.parquet: record 4", "answer", "null"), before_load=True),
    data_case("data-csv-byte-order-mark", "d.csv", BOM + CSV_ROWS + '"q",""\n',
              ("d.csv:8", "answer", "empty"), not_words=("missing field",)),
    data_case("data-json-byte-order-mark", "d.json", BOM + '[{"question": "q", "answer": ""}]',
              ("d.json: record 1", "empty"), not_words=("JSON",)),
    data_case("data-jsonl-byte-order-mark", "d.jsonl", BOM + GOOD_JSONL + '{"question": "q"}\n',
              ("d.jsonl:25", "missing field 'answer'")),
    eval_case("eval-data-answer-null", ["--data-path", "gsm8k=@TMP@/t.jsonl"], ("t.jsonl:2", "answer"),
              files={"t.jsonl": GOOD_JSONL.splitlines()[0] + '\n{"question": "q", "answer": null}\n'},
              before_load=True),
    # --- options checked before the model loads -------------------------------------------------------------
    run_case(sets=("training.epochs=1", "training.select_best_by=heldout:exact_match,strict-match"),
             id="set-select-best-by-blames-its-own-set", words=("--set training.select_best_by",),
             not_words=("--set training.epochs",), before_load=True),
    run_case({"training": {"select_best_by": "heldout"}}, id="cfg-select-best-by-without-metric",
             words=("training.select_best_by", "<task>:<metric>"), before_load=True),
    run_case({"training": {"select_best_by": "nosuch:acc"}, "eval": {"during_training": {"enabled": True}}},
             id="cfg-select-best-by-task-not-scored", words=("training.select_best_by", "nosuch"),
             before_load=True),
    run_case({"eval": {"during_training": {"enabled": True, "tasks": ["heldout", "heldout"]}}},
             id="cfg-during-training-duplicate-task", words=("eval.during_training.tasks", "more than once"),
             before_load=True),
    run_case({"eval": {"during_training": {"tasks": ["no_such_task"]}}},
             id="cfg-during-training-tasks-enable-it", words=("no_such_task",), before_load=True),
    run_case({"training": {"select_best_by": "heldout:exact_match"}, "eval": {"during_training": {
        "enabled": False, "tasks": ["heldout"]}}}, id="cfg-during-training-explicitly-off",
        words=("training.select_best_by", "enabled=true"), before_load=True),
    eval_case("eval-data-path-empty-path", ["--data-path", "gsm8k="], ("--data-path", "no path"),
              before_load=True),
    eval_case("eval-data-path-empty-task", ["--data-path", "=@TMP@/test.jsonl"], ("--data-path", "no task"),
              before_load=True),
    eval_case("eval-data-path-blank", ["--data-path", " = "], ("--data-path",), before_load=True),
    eval_case("eval-num-fewshot-huge", ["--num-fewshot", "100000"], ("100000-shot", "num_fewshot"),
              before_load=True),
    eval_case("eval-num-fewshot-negative", ["--num-fewshot", "-1"], ("--num-fewshot",), before_load=True),
    # --- models and weights ---------------------------------------------------------------------------------
    model_case("model-garbage-gguf", "@TMP@/w.gguf", ("w.gguf", "GGUF"), setup=lambda tmp, m: write(
        tmp / "w.gguf", b"GGUF" + bytes(range(256)) * 8)),
    model_case("model-not-gguf-at-all", "@TMP@/w.gguf", ("w.gguf", "GGUF"), setup=lambda tmp, m: write(
        tmp / "w.gguf", "hello")),
    model_case("model-cache-is-a-file", "@TMP@/w.gguf", ("model cache", "is a file"), setup=lambda tmp, m: (
        write(tmp / "w.gguf", b"GGUF" + bytes(8)), write(tmp / "cache", "not a folder"))),
    run_case({"eval": {"data_path": {"gsm8k": ""}}}, id="cfg-data-path-empty", words=("eval.data_path",),
             before_load=True),
    model_case("model-pickled-weights", "@TMP@/m", ("pytorch_model.bin", "refused", "safetensors"),
               setup=pickled_model),
    eval_case("eval-adapter-pickled-weights", ["--adapter", "@TMP@/ad"], ("adapter_model.bin", "refused"),
              setup=adapter_folder(pickled_adapter)),
    Case(id="compare-output-is-a-file", argv=["compare", "@TMP@/run", "-o", "@TMP@/f"], setup=with_run(),
         files={"f": "mine"}, words=("--output", "is a file")),
    # --- grid: the same handling as run ---------------------------------------------------------------------
    Case(id="grid-file-latin-1", argv=["grid", "@TMP@/g.yaml", "--dry-run"],
         files={**grid_files(),
                "g.yaml": b"name: g\nbase: c.yaml\n# caf\xe9\naxes: {training.lora.r: [4]}\n"},
         words=("g.yaml:3", "UTF-8"), before_load=True),
    Case(id="grid-file-binary", argv=["grid", "@TMP@/g.yaml"], files={"g.yaml": bytes(range(256))},
         words=("g.yaml", "UTF-8"), before_load=True),
    Case(id="grid-file-is-a-folder", argv=["grid", "@TMP@"], words=("folder",), before_load=True),
    Case(id="grid-file-missing", argv=["grid", "@TMP@/nope.yaml"], words=("nope.yaml", "not found"),
         before_load=True),
    grid_case("grid-output-dir-is-a-file", [], ("output_dir", "is a file"), grid={"output_dir": "f"},
              files={"f": "mine"}, before_load=True, exists=("f",)),
    grid_case("grid-output-dir-is-a-file-dry-run", ["--dry-run"], ("output_dir", "is a file"),
              grid={"output_dir": "f"}, files={"f": "mine"}, before_load=True),
    grid_case("grid-ray-address-not-host-port", ["--ray-address", "nonsense"], ("--ray-address", "HOST:PORT"),
              before_load=True, absent=("runs/g",)),
    grid_case("grid-ray-address-dead", ["--ray-address", "127.0.0.1:9"], ("--ray-address", "no Ray cluster"),
              before_load=True, absent=("runs/g",)),
    grid_case("grid-dry-run-base-data-missing", ["--dry-run"], ("missing.jsonl", "not found"),
              cfg={"data": {"source": "@TMP@/missing.jsonl"}}, before_load=True),
    grid_case("grid-dry-run-axis-data-missing", ["--dry-run"], ("nowhere.jsonl", "not found"),
              grid={"axes": {"data.source": ["nowhere.jsonl"]}}, before_load=True),
    grid_case("grid-dry-run-data-bad-row", ["--dry-run"], ("bad.jsonl:1", "answer"),
              grid={"axes": {"data.source": ["bad.jsonl"]}}, files={"bad.jsonl": '{"question": "q"}\n'},
              before_load=True),
    Case(id="grid-axis-path-relative-to-grid-file", argv=["grid", "@TMP@/sub/g.yaml", "--dry-run"], code=0,
         words=("estimated total",),
         files={"sub/d2.jsonl": GOOD_JSONL,
                **{f"sub/{k}": v for k, v in grid_files({"axes": {"data.source": ["d2.jsonl"]}}).items()}}),
    grid_case("grid-failed-cell-exits-non-zero", [], ("0 of 1 runs complete", "1 failed"), code=1,
              grid={"axes": {"model.name": ["@TMP@/no-model"]}}),
    grid_case("grid-set-blames-its-own-set", ["--set", "training.epochs=1", "--set", "training.nope=1"],
              ("--set training.nope",), not_words=("--set training.epochs",), before_load=True),
    grid_case("grid-takes-over-a-stale-lock", [], ("stale lock", "999999", "1 of 1 runs complete"), code=0,
              setup=stale_lock("runs/.g.lock"), absent=("runs/.g.lock",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_user_error_2(case: Case, isolated: Path, tiny_model_dir: Path, monkeypatch):  # noqa: F811
    argv = prepare(case, isolated, tiny_model_dir)
    code, output = invoke(argv, before_load=case.before_load, monkeypatch=monkeypatch)
    check(case, code, output, isolated)
    for line in output.splitlines():
        assert len(line) < 2000, f"a line of {len(line)} characters"


def test_ray_address_from_the_environment_is_checked(isolated: Path, tiny_model_dir: Path,  # noqa: F811
                                                     monkeypatch):
    pytest.importorskip("ray")
    case = grid_case("grid-RAY_ADDRESS-dead", ["--ray"], ("RAY_ADDRESS", "no Ray cluster"), before_load=True)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    code, output = invoke(prepare(case, isolated, tiny_model_dir), before_load=True, monkeypatch=monkeypatch)
    check(case, code, output, isolated)


def test_ray_address_auto_without_a_cluster(isolated: Path, tiny_model_dir: Path, monkeypatch):  # noqa: F811
    ray = pytest.importorskip("ray")
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        pytest.skip("a Ray cluster is already joined in this process")
    case = grid_case("grid-ray-address-auto", ["--ray-address", "auto"],
                     ("--ray-address", "ray start --head"), before_load=True, absent=("runs/g",))
    code, output = invoke(prepare(case, isolated, tiny_model_dir), before_load=True, monkeypatch=monkeypatch)
    check(case, code, output, isolated)


def test_the_table_has_sixty_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------- real processes: two writers, kill -9, signals


def tunescope(tmp: Path, *argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunescope.cli", *argv], env=cli_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def long_config(tmp: Path, model: Path, steps: int = 40, **extra) -> Path:
    cfg = merged(BASE_CONFIG, {"training": {"max_steps": steps, "checkpoint_every": 2, "eval_every": 1000},
                               "prompt": {"max_length": 48}, **extra})
    write(tmp / "c.yaml", fill(yaml.safe_dump(cfg, sort_keys=False), tmp, model))
    write(tmp / "train.jsonl", GOOD_JSONL)
    return tmp / "c.yaml"


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob(pattern)):
        if proc.poll() is not None:
            raise AssertionError(f"ended before {pattern} appeared: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{pattern} never appeared")
        time.sleep(0.2)


def finished(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in out + err, err
    return proc.returncode, out + err


def only_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


def assert_complete_run(folder: Path) -> None:
    assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    for name in ("config.yaml", "metrics.jsonl", "adapter/adapter_model.safetensors", "report.json"):
        assert (folder / name).is_file(), f"{name} missing from {folder}"
    assert not (folder.parent / f".{folder.name}.partial").exists()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def held(request):
    """Processes a test stopped with SIGSTOP: continued and ended however the test ends."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
            p.communicate()


@pytest.mark.slow
def test_two_train_processes_on_one_run_name(tmp_path: Path, tiny_model_dir: Path, held):
    cfg = long_config(tmp_path, tiny_model_dir)
    first = tunescope(tmp_path, "train", str(cfg))
    held.append(first)
    wait_for("runs/.t.partial/checkpoints/step-*", tmp_path, first)
    os.kill(first.pid, signal.SIGSTOP)  # the first writer stays mid-run while the second tries
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, output = finished(tunescope(tmp_path, "train", str(cfg), *extra))
        line = only_error_line(output)
        assert code == 2 and f"PID {first.pid}" in line and socket.gethostname() in line, output
    code, output = finished(tunescope(tmp_path, "export", str(tmp_path / "runs" / ".t.partial"), "-o",
                                      str(tmp_path / "out")))
    assert code == 2 and f"PID {first.pid}" in only_error_line(output)
    os.kill(first.pid, signal.SIGCONT)
    code, output = finished(first)
    assert code == 0, output
    assert_complete_run(tmp_path / "runs" / "t")
    assert not (tmp_path / "runs" / ".t.lock").exists()


@pytest.mark.slow
def test_kill_9_then_rerun_takes_over_the_stale_lock(tmp_path: Path, tiny_model_dir: Path):
    cfg = long_config(tmp_path, tiny_model_dir, steps=400)
    first = tunescope(tmp_path, "train", str(cfg))
    wait_for("runs/.t.partial/checkpoints/step-*", tmp_path, first)
    first.kill()
    first.communicate()
    assert (tmp_path / "runs" / ".t.lock").is_file()  # left behind, its holder gone
    code, output = finished(tunescope(tmp_path, "train", str(cfg), "--resume"))
    assert code == 0, output
    assert "stale lock" in output and f"PID {first.pid}" in output, output
    assert_complete_run(tmp_path / "runs" / "t")
    assert not (tmp_path / "runs" / ".t.lock").exists()


@pytest.mark.slow
def test_two_grids_on_one_folder(tmp_path: Path, tiny_model_dir: Path, held):
    long_config(tmp_path, tiny_model_dir)
    write(tmp_path / "g.yaml", yaml.safe_dump(GRID))
    first = tunescope(tmp_path, "grid", str(tmp_path / "g.yaml"))
    held.append(first)
    wait_for("runs/g/.4-s1.partial/checkpoints/step-*", tmp_path, first)
    os.kill(first.pid, signal.SIGSTOP)
    code, output = finished(tunescope(tmp_path, "grid", str(tmp_path / "g.yaml")))
    line = only_error_line(output)
    assert code == 2 and f"PID {first.pid}" in line and socket.gethostname() in line, output
    # A plain run of the cell's config is refused by the cell's own lock.
    cell_cfg = tmp_path / "runs" / "g" / ".4-s1.partial" / "config.yaml"
    code, output = finished(tunescope(tmp_path, "run", str(cell_cfg), "--overwrite"))
    assert code == 2 and f"PID {first.pid}" in only_error_line(output), output
    os.kill(first.pid, signal.SIGCONT)
    code, output = finished(first)
    assert code == 0 and "1 of 1 runs complete" in output, output
    assert_complete_run(tmp_path / "runs" / "g" / "4-s1")
    assert json.loads((tmp_path / "runs" / "g" / "_cells" / "4-s1.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, tiny_model_dir: Path):
    cfg = long_config(tmp_path, tiny_model_dir, steps=2000)
    proc = tunescope(tmp_path, "run", str(cfg))
    wait_for("runs/.t.partial/checkpoints/step-*", tmp_path, proc)
    proc.terminate()
    code, output = finished(proc, timeout=120)
    assert code == 143, output
    assert "SIGTERM" in output and ".t.partial" in output and "--resume" in output, output
    assert (json.loads((tmp_path / "runs" / ".t.partial" / "manifest.json").read_text())["status"]
            == "interrupted")
    assert not (tmp_path / "runs" / ".t.lock").exists()


@pytest.mark.slow
def test_ctrl_c_in_a_grid_marks_the_cell_and_names_the_grid_command(tmp_path: Path, tiny_model_dir: Path):
    long_config(tmp_path, tiny_model_dir, steps=2000)
    write(tmp_path / "g.yaml", yaml.safe_dump(GRID))
    proc = tunescope(tmp_path, "grid", str(tmp_path / "g.yaml"), preexec_fn=_default_sigint)
    wait_for("runs/g/.4-s1.partial/checkpoints/step-*", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    code, output = finished(proc, timeout=120)
    assert code == 130, output
    assert "tunescope grid" in output and "--resume" not in output, output
    status = json.loads((tmp_path / "runs" / "g" / "_cells" / "4-s1.json").read_text())
    assert status["status"] == "interrupted"


@pytest.mark.slow
def test_a_resumed_run_keeps_its_first_setup_record(tmp_path: Path, tiny_model_dir: Path):
    cfg = long_config(tmp_path, tiny_model_dir, steps=400)
    proc = tunescope(tmp_path, "train", str(cfg))
    wait_for("runs/.t.partial/checkpoints/step-*", tmp_path, proc)
    proc.kill()
    proc.communicate()
    code, output = finished(tunescope(tmp_path, "train", str(cfg), "--resume"))
    assert code == 0, output
    records = [json.loads(line)
               for line in (tmp_path / "runs" / "t" / "metrics.jsonl").read_text().splitlines()]
    setups = [r for r in records if r["kind"] == "setup"]
    assert setups and setups[0].get("resumed_from_step") is None, setups
    assert records[0]["kind"] == "setup"


def test_the_report_of_a_diverged_run_says_so_and_where(isolated: Path, tiny_model_dir: Path,  # noqa: F811
                                                        monkeypatch):
    run = complete_run(isolated, tiny_model_dir)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    steps = sorted({r["step"] for r in records if r.get("kind") == "train"})
    bad_step = steps[len(steps) // 2]
    for r in records:
        if r.get("kind") == "train" and r["step"] >= bad_step:
            r["loss"] = float("nan") if r["step"] == bad_step else float("inf")
    # NaN, Infinity as JSON has them
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, output = invoke(["report", str(run)], before_load=False, monkeypatch=monkeypatch)
    assert code == 0 and "Traceback" not in output, output
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["diverged"]["step"] == bad_step
    md = (run / "report.md").read_text()
    assert f"diverged: the train loss became nan at step {bad_step}" in md, md[:3000]
