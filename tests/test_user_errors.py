"""Fault injection: every input a user can get wrong ends as one line naming the place, exit code 2, no
traceback, and nothing half-written presented as complete.

Each case is a row: the files it starts from, the command, the exit code, the words the message must
(and must not) contain, and what must exist or be absent afterwards. Commands run in-process through
typer's runner; only Ctrl-C, kill -9, a full disk and a read-only mount (as root) need a process of
their own. `before_load` cases must fail before any model weights are read: loading them raises.

Placeholders in files and argv: @TMP@ (the case's folder), @MODEL@ (a tiny Llama), @CFG@ (c.yaml).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthetic_run import build_run

ROOT = Path(__file__).resolve().parents[1]
GOOD_ROWS = [{"question": f"What is {a} plus {a + 1}?",
              "answer": f"{a} + {a + 1} = {2 * a + 1}\n#### {2 * a + 1}"}
             for a in range(1, 25)]
GOOD_JSONL = "".join(json.dumps(r) + "\n" for r in GOOD_ROWS)
BASE_CONFIG = {
    "name": "t", "output_dir": "@TMP@/runs", "seed": 1,
    "model": {"name": "@MODEL@", "dtype": "float32"},
    "data": {"source": "@TMP@/train.jsonl"},
    "prompt": {"max_length": 64},
    "training": {"max_steps": 2, "batch_size": 4, "eval_every": 1, "threads": 1},
    "eval": {"tasks": []},
    "report": {"embedding_backend": "tfidf", "bootstrap_resamples": 100},
}
EVAL = ["eval", "-m", "@MODEL@", "-t", "gsm8k", "--data-path", "gsm8k=@TMP@/test.jsonl", "--limit", "1",
        "--dtype", "float32", "--num-fewshot", "0"]


@dataclass
class Case:
    id: str
    argv: list[str]
    words: tuple[str, ...] = ()
    code: int = 2
    files: dict[str, str | bytes] = field(default_factory=dict)
    cfg: dict | None = None  # merged into BASE_CONFIG and written as c.yaml (unless files has c.yaml)
    not_words: tuple[str, ...] = ()
    exists: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    setup: Callable[[Path, Path], None] | None = None  # (case folder, tiny model folder)
    before_load: bool = False
    readonly: str | None = None  # a folder made read-only for the command


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_case(cfg: dict | None = None, *, sets: tuple[str, ...] = (), **kw) -> Case:
    """A `tunescope run c.yaml` case (with `cfg` merged into the base config)."""
    argv = ["run", "@CFG@", *[x for s in sets for x in ("--set", s)]]
    return Case(argv=argv, cfg=cfg or {}, **kw)


def contamination_case(id: str, extra: list[str], words: tuple[str, ...], *, data: str = "@TMP@/train.jsonl",
                       files: dict | None = None, code: int = 2) -> Case:
    """`tunescope contamination DATA -t gsm8k` on a local task file holding the training questions (so a
    3-gram overlap is found), with `extra` options after the defaults (a later option wins)."""
    argv = ["contamination", data, "-t", "gsm8k", "--data-path", "gsm8k=@TMP@/test.jsonl", "--ngram", "3",
            *extra]
    return Case(id=id, argv=argv, words=words, code=code, files={"test.jsonl": GOOD_JSONL, **(files or {})},
                before_load=True)


def data_case(id: str, name: str, content: str | bytes, words: tuple[str, ...], **kw) -> Case:
    return run_case({"data": {"source": f"@TMP@/{name}"}}, id=id, files={name: content}, words=words,
                    before_load=True, **kw)


def eval_case(id: str, extra: list[str], words: tuple[str, ...], files: dict | None = None, **kw) -> Case:
    return Case(id=id, argv=[*EVAL, *extra], words=words, files={"test.jsonl": GOOD_JSONL, **(files or {})},
                **kw)


def model_case(id: str, model: str, words: tuple[str, ...], setup=None, **kw) -> Case:
    argv = [x if x != "@MODEL@" else model for x in EVAL]
    return Case(id=id, argv=argv, words=words, files={"test.jsonl": GOOD_JSONL}, setup=setup, **kw)


# ----------------------------------------------------------------- setups: folders to start from


def copy_model(tmp: Path, model: Path, name: str = "m") -> Path:
    dst = tmp / name
    shutil.copytree(model, dst)
    return dst


def edit_model(change: Callable[[Path], None]) -> Callable[[Path, Path], None]:
    return lambda tmp, model: change(copy_model(tmp, model))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _adapter(model: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tunescope.config.run_config import TrainingConfig
    from tunescope.train.adapters import build_trainable

    torch.manual_seed(0)
    build_trainable(AutoModelForCausalLM.from_pretrained(model), TrainingConfig()).save_pretrained(out)


ADAPTER_CACHE: dict[str, Path] = {}


def adapter_for(model: Path) -> Path:
    """One LoRA adapter of the tiny model, built once and copied into each case that needs one."""
    if str(model) not in ADAPTER_CACHE:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="tunescope-adapter-")) / "adapter"
        _adapter(model, out)
        ADAPTER_CACHE[str(model)] = out
    return ADAPTER_CACHE[str(model)]


def complete_run(tmp: Path, model: Path, name: str = "run", *, adapter: bool = True, status: str = "complete",
                 folder: str | None = None) -> Path:
    """A finished run folder (synthetic metrics and evaluations) of the tiny model, with its adapter."""
    run = build_run(tmp, name, model=str(model), extra_overrides=("training.threads=1",), n_mc=20,
                    n_heldout=10)
    if folder is not None:
        run = run.rename(tmp / folder)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(status=status, model={"name": str(model), "source": str(model)})
    (run / "manifest.json").write_text(json.dumps(manifest))
    if adapter:
        shutil.copytree(adapter_for(model), run / "adapter")
    return run


def with_run(change: Callable[[Path], None] | None = None, **kw) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, model: Path) -> None:
        run = complete_run(tmp, model, **kw)
        if change is not None:
            change(run)
    return setup


def partial_run(tmp: Path, model: Path) -> None:
    """What a run killed by a full disk leaves: `.t.partial/`, status failed, an adapter without weights."""
    run = complete_run(tmp / "runs", model, name="t", folder=".t.partial", status="failed")
    (run / "adapter" / "adapter_model.safetensors").unlink()


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)


def adapter_folder(change: Callable[[Path], None] | None = None) -> Callable[[Path, Path], None]:
    def setup(tmp: Path, model: Path) -> None:
        shutil.copytree(adapter_for(model), tmp / "ad")
        if change is not None:
            change(tmp / "ad")
    return setup


NOT_UTF8 = b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n'
BIN = bytes(range(256)) * 4

# ----------------------------------------------------------------- the cases

CASES: list[Case] = [
    # --- config: keys, values, YAML, the file itself -------------------------------------------------------
    run_case({"trainig": {"epochs": 1}}, id="cfg-unknown-top-key",
             words=("unknown key 'trainig'", "training"), before_load=True),
    run_case({"training": {"epocs": 1}}, id="cfg-unknown-nested-key", words=("training.epocs", "epochs"),
             before_load=True),
    run_case({"training": {"learning_rate": -1}}, id="cfg-bad-value",
             words=("training.learning_rate", "greater"), before_load=True),
    run_case({"training": {"epochs": "three"}}, id="cfg-wrong-type", words=("training.epochs",),
             before_load=True),
    run_case({"training": {"lora": {"r": 0}}}, id="cfg-lora-r-zero", words=("training.lora.r",),
             before_load=True),
    run_case({"data": {"val_fraction": 1.5}}, id="cfg-val-fraction", words=("data.val_fraction",),
             before_load=True),
    run_case({"device": "tpu"}, id="cfg-device-literal", words=("key 'device'",), before_load=True),
    run_case({"model": {"dtype": "float8"}}, id="cfg-dtype-literal", words=("model.dtype",),
             before_load=True),
    run_case({"eval": {"temperature": 0.5}}, id="cfg-temperature-without-samples",
             words=("eval.temperature", "samples > 1"), before_load=True),
    run_case({"name": "../escape"}, id="cfg-name-escapes", words=("key 'name'",), before_load=True),
    run_case({"name": ".hidden"}, id="cfg-name-hidden", words=("key 'name'",), before_load=True),
    run_case({"seed": 99999999999999999999999999}, id="cfg-seed-huge", words=("key 'seed'", "4294967296"),
             before_load=True, absent=("runs",)),
    run_case({"seed": -1}, id="cfg-seed-negative", words=("key 'seed'",), before_load=True),
    run_case({"data": {"seed": 2**32}}, id="cfg-data-seed-huge", words=("data.seed",), before_load=True),
    run_case(sets=("seed=99999999999999999999999999",), id="set-seed-huge",
             words=("--set seed", "4294967296"), before_load=True, absent=("runs",)),
    run_case({"prompt": {"template": 'Q: {question} as JSON {"x": 1}\nA: {answer}'}},
             id="cfg-template-braces", words=("prompt.template", "{{"), before_load=True),
    run_case({"prompt": {"template": "Q: {question} {"}}, id="cfg-template-open-brace",
             words=("prompt.template", "{{"), before_load=True),
    run_case({"prompt": {"template": "Q: {question} }\nA: {answer}"}}, id="cfg-template-close-brace",
             words=("prompt.template", "}}"), before_load=True),
    run_case({"prompt": {"template": "Q: {q}\nA: {answer}"}}, id="cfg-template-unknown-field",
             words=("prompt.template", "{q}"), before_load=True),
    run_case({"prompt": {"template": "Just {question}"}}, id="cfg-template-no-answer",
             words=("prompt.template", "{answer}"), before_load=True),
    run_case({"prompt": {"template": "{answer} {question}"}}, id="cfg-template-no-prompt",
             words=("prompt.template", "before {answer}"), before_load=True),
    run_case({"prompt": {"template": "Q: {question[0]}\nA: {answer}"}}, id="cfg-template-index",
             words=("prompt.template",), before_load=True),
    run_case({"training": {"method": "qlora"}}, id="cfg-qlora-on-cpu", words=("training.method",),
             before_load=True),
    run_case({"device": "cuda"}, id="cfg-cuda-missing", words=("device", "CUDA"), before_load=True),
    Case(id="cfg-line-of-nested-key", argv=["run", "@CFG@"], before_load=True,
         files={"c.yaml": "name: t\ntraining:\n  epochs: 1\n  learning_rate: -2\n"},
         words=("c.yaml:4", "training.learning_rate")),
    Case(id="cfg-line-of-unknown-key", argv=["run", "@CFG@"], before_load=True,
         files={"c.yaml": "name: t\n\nmodle:\n  name: x\n"}, words=("c.yaml:3", "unknown key 'modle'")),
    Case(id="cfg-invalid-yaml", argv=["run", "@CFG@"], files={"c.yaml": "name: a\ntraining: [unclosed\n"},
         words=("c.yaml:", "not valid YAML"), before_load=True),
    Case(id="cfg-yaml-tab", argv=["run", "@CFG@"], files={"c.yaml": "name: a\ntraining:\n\tepochs: 1\n"},
         words=("c.yaml:3", "not valid YAML"), before_load=True),
    Case(id="cfg-not-mapping", argv=["run", "@CFG@"], files={"c.yaml": "- a\n- b\n"}, words=("mapping",),
         before_load=True),
    Case(id="cfg-empty-file", argv=["run", "@CFG@"], files={"c.yaml": ""}, words=("c.yaml", "empty"),
         before_load=True, absent=("runs",)),
    Case(id="cfg-comments-only", argv=["run", "@CFG@"], files={"c.yaml": "# nothing yet\n"}, words=("empty",),
         before_load=True),
    Case(id="cfg-binary-file", argv=["run", "@CFG@"], files={"c.yaml": b"name: x\n\xff\xfe\x00binary"},
         words=("c.yaml:2", "UTF-8"), before_load=True),
    Case(id="cfg-missing", argv=["run", "@TMP@/nope.yaml"], words=("nope.yaml", "config file not found")),
    Case(id="cfg-is-folder", argv=["run", "@TMP@"], words=("folder",)),
    Case(id="train-cfg-typo", argv=["train", "@CFG@"], files={"c.yaml": "name: t\ntrainig: {}\n"},
         words=("c.yaml:2", "trainig"), before_load=True),
    # --- --set overrides ------------------------------------------------------------------------------------
    run_case(sets=("training.epochs",), id="set-no-equals", words=("--set", "key.path=value"),
             before_load=True),
    run_case(sets=("=3",), id="set-empty-key", words=("--set", "empty key"), before_load=True),
    run_case(sets=("training.nope=1",), id="set-unknown-key", words=("--set training.nope", "unknown key"),
             not_words=("c.yaml",), before_load=True),
    run_case(sets=("training.epochs=-1",), id="set-bad-value", words=("--set training.epochs",),
             not_words=("c.yaml",), before_load=True),
    run_case(sets=("seed.x=1",), id="set-into-scalar", words=("--set", "not a section"), before_load=True),
    run_case({"output_dir": "@TMP@/c.yaml"}, sets=("name=123",), id="set-name-number-stays-text",
             words=("output_dir", "is a file"), not_words=("valid string",), before_load=True),
    run_case(sets=("eval.limit=0",), id="set-eval-limit-zero", words=("--set eval.limit",), before_load=True),
    # --- training data -------------------------------------------------------------------------------------
    data_case("data-missing-field", "d.jsonl", GOOD_JSONL + json.dumps({"question": "q"}) + "\n",
              ("d.jsonl:25", "answer")),
    data_case("data-bad-json-line", "d.jsonl", GOOD_JSONL[:200] + "\n{oops\n",
              ("d.jsonl:", "not valid JSON Lines")),
    data_case("data-line-not-object", "d.jsonl", "[1, 2]\n", ("d.jsonl:1", "JSON object")),
    data_case("data-not-utf8-jsonl", "d.jsonl", NOT_UTF8, ("d.jsonl:2", "UTF-8")),
    data_case("data-not-utf8-json", "d.json", b'[{"question": "caf\xe9", "answer": "1"}]',
              ("d.json:1", "UTF-8")),
    data_case("data-not-utf8-csv", "d.csv", b"question,answer\nq,1\ncaf\xe9,2\n", ("d.csv:3", "UTF-8")),
    data_case("data-binary-jsonl", "d.jsonl", BIN, ("d.jsonl", "UTF-8")),
    data_case("data-json-invalid", "d.json", '[{"question": "q",', ("d.json:1", "not valid JSON")),
    data_case("data-json-not-list", "d.json", '{"a": 1, "b": 2}', ("d.json", "list")),
    data_case("data-csv-extra-column", "d.csv", "question,answer\nq1,1\nq2,2,surplus\n",
              ("d.csv:3", "header has 2")),
    data_case("data-csv-missing-column", "d.csv", "question,answer\nq1,1\nq2\n", ("d.csv:3", "1 fields")),
    data_case("data-parquet-not-parquet", "d.parquet", "question,answer\nq,1\n", ("d.parquet", "Parquet")),
    data_case("data-parquet-empty-file", "d.parquet", b"", ("d.parquet", "Parquet")),
    data_case("data-unsupported-suffix", "d.txt", "hello\n", ("d.txt", "unsupported file type")),
    data_case("data-empty", "d.jsonl", "", ("the dataset is empty",)),
    data_case("data-empty-answer", "d.jsonl", json.dumps({"question": "q", "answer": ""}) + "\n",
              ("d.jsonl:1", "answer", "empty")),
    data_case("data-answer-is-list", "d.jsonl", json.dumps({"question": "q", "answer": [1]}) + "\n",
              ("d.jsonl:1", "answer")),
    run_case({"data": {"source": "@TMP@/missing.jsonl"}}, id="data-file-missing",
             words=("missing.jsonl", "not found"), before_load=True),
    run_case({"data": {"source": "@TMP@/dir"}}, id="data-dir-without-split", files={"dir/readme.md": "x"},
             words=("dir", "no train file"), before_load=True),
    run_case({"data": {"question_field": "prompt"}}, id="data-question-field-missing",
             files={"train.jsonl": GOOD_JSONL}, words=("train.jsonl:1", "prompt"), before_load=True),
    run_case({"prompt": {"max_length": 8, "overflow": "drop"}}, id="data-nothing-left-after-encoding",
             files={"train.jsonl": GOOD_JSONL}, words=("prompt.max_length", "no training examples"),
             before_load=True, absent=("runs/t", "runs/.t.partial")),
    run_case({"prompt": {"max_length": 8, "overflow": "drop"}, "eval": {"tasks": ["heldout"]}},
             id="data-nothing-left-before-base-eval", files={"train.jsonl": GOOD_JSONL},
             words=("prompt.max_length",), before_load=True, absent=("runs/.t.partial",)),
    # --- tunescope contamination: the training file, the tasks, the options (no model ever loads) -----------
    contamination_case("contamination-ok", [], ("task gsm8k", "training example"), code=0),
    contamination_case("contamination-data-missing", [], ("nope.jsonl", "not found"),
                       data="@TMP@/nope.jsonl"),
    contamination_case("contamination-data-format", [], ("notes.txt", "unsupported file type"),
                       data="@TMP@/notes.txt", files={"notes.txt": "hello\n"}),
    contamination_case("contamination-data-bad-json", [], ("bad.jsonl:2",), data="@TMP@/bad.jsonl",
                       files={"bad.jsonl": GOOD_JSONL.splitlines()[0] + '\n{"question": "a", "answer"\n'}),
    contamination_case("contamination-data-missing-field", [], ("q.jsonl:1", "question"),
                       data="@TMP@/q.jsonl", files={"q.jsonl": '{"prompt": "a", "answer": "b"}\n'}),
    contamination_case("contamination-unknown-task", ["-t", "gsm9k"], ("unknown task 'gsm9k'",)),
    contamination_case("contamination-task-file-missing", ["--data-path", "gsm8k=@TMP@/none.jsonl"],
                       ("none.jsonl",)),
    contamination_case("contamination-data-path-form", ["--data-path", "gsm8k"],
                       ("task=PATH", "--data-path")),
    contamination_case("contamination-limit-zero", ["--limit", "0"], ("--limit", "at least 1")),
    contamination_case("contamination-ngram-zero", ["--ngram", "0"], ("--ngram", "at least 1")),
    # --- evaluation options ---------------------------------------------------------------------------------
    Case(id="eval-unknown-task", argv=["eval", "-m", "x/y", "-t", "gsm9k"],
         words=("unknown task 'gsm9k'", "gsm8k"), before_load=True),
    Case(id="eval-samples-zero", argv=["eval", "-m", "x/y", "-t", "gsm8k", "--samples", "0"],
         words=("samples", "at least 1"), before_load=True),
    Case(id="eval-temperature-greedy", argv=["eval", "-m", "x/y", "-t", "gsm8k", "--temperature", "0.5"],
         words=("temperature", "samples > 1"), before_load=True),
    eval_case("eval-limit-zero", ["--limit", "0"], ("--limit", "at least 1"), before_load=True),
    eval_case("eval-limit-negative", ["--limit", "-3"], ("--limit",), before_load=True),
    eval_case("eval-batch-size-zero", ["--batch-size", "0"], ("--batch-size", "at least 1"),
              before_load=True),
    eval_case("eval-batch-size-text", ["--batch-size", "many"], ("--batch-size", "integer"),
              before_load=True),
    eval_case("eval-dtype-unknown", ["--dtype", "float8"], ("--dtype", "float32"), before_load=True),
    eval_case("eval-engine-unknown", ["--engine", "warp"], ("--engine",), before_load=True),
    eval_case("eval-engine-with-lm-eval", ["--engine", "native", "--backend", "lm-eval"],
              ("--engine", "lm-eval"), before_load=True),
    eval_case("eval-data-path-no-equals", ["--data-path", "gsm8k"], ("--data-path", "task=PATH"),
              before_load=True),
    eval_case("eval-data-path-missing", ["--data-path", "gsm8k=@TMP@/none.jsonl"],
              ("none.jsonl", "does not exist"), before_load=True),
    eval_case("eval-data-not-utf8", ["--data-path", "gsm8k=@TMP@/bad.jsonl"], ("bad.jsonl:2", "UTF-8"),
              files={"bad.jsonl": NOT_UTF8}, before_load=True),
    eval_case("eval-data-bad-json", ["--data-path", "gsm8k=@TMP@/bad.jsonl"], ("bad.jsonl:2", "JSON Lines"),
              files={"bad.jsonl": '{"question": "q", "answer": "#### 1"}\n{nope\n'}, before_load=True),
    eval_case("eval-data-not-parquet", ["--data-path", "gsm8k=@TMP@/t.parquet"], ("t.parquet", "Parquet"),
              files={"t.parquet": "not parquet"}, before_load=True),
    eval_case("eval-data-json-not-utf8", ["--data-path", "gsm8k=@TMP@/t.json"], ("t.json", "UTF-8"),
              files={"t.json": b'[{"question": "\xff"}]'}, before_load=True),
    eval_case("eval-output-is-file", ["--output", "@TMP@/out"], ("--output", "is a file"), files={"out": "x"},
              before_load=True),
    eval_case("eval-output-under-file", ["--output", "@TMP@/out/res"], ("--output", "is a file"),
              files={"out": "x"}, before_load=True),
    eval_case("eval-output-read-only", ["--output", "@TMP@/ro/res"], ("--output", "ro"), readonly="ro",
              before_load=True, absent=("ro/res",)),
    eval_case("eval-adapter-missing-config", ["--adapter", "@TMP@/ad"], ("ad", "adapter_config.json"),
              setup=adapter_folder(lambda a: (a / "adapter_config.json").unlink()), before_load=True),
    eval_case("eval-adapter-config-invalid-json", ["--adapter", "@TMP@/ad"], ("adapter_config.json", "JSON"),
              setup=adapter_folder(lambda a: (a / "adapter_config.json").write_text('{"peft_type": ')),
              before_load=True),
    eval_case("eval-adapter-config-no-peft-type", ["--adapter", "@TMP@/ad"],
              ("adapter_config.json", "peft_type"),
              setup=adapter_folder(lambda a: (a / "adapter_config.json").write_text("{}")), before_load=True),
    eval_case("eval-adapter-no-weights", ["--adapter", "@TMP@/ad"], ("ad", "adapter weights"),
              setup=adapter_folder(lambda a: (a / "adapter_model.safetensors").unlink()), before_load=True),
    eval_case("eval-adapter-wrong-targets", ["--adapter", "@TMP@/ad"], ("ad", "cannot apply the adapter"),
              setup=adapter_folder(lambda a: (a / "adapter_config.json").write_text(json.dumps(
                  {**json.loads((a / "adapter_config.json").read_text()),
                   "target_modules": ["no_such_layer"]})))),
    eval_case("eval-ok", [], ("gsm8k",), code=0),
    eval_case("eval-ok-writes-output", ["--output", "@TMP@/res"], (), code=0, exists=("res/results.json",)),
    # --- models ---------------------------------------------------------------------------------------------
    model_case("model-unknown-alias", "no-such-model", ("unknown model alias 'no-such-model'",)),
    model_case("model-path-missing", "@TMP@/nowhere/model", ("does not exist",), not_words=("hub",)),
    model_case("model-relative-path-missing", "./no/such/folder", ("does not exist",), not_words=("hub",)),
    model_case("model-gguf-missing", "@TMP@/w.gguf", ("w.gguf", "does not exist"), not_words=("hub",)),
    model_case("model-dir-without-config", "@TMP@/m", ("config.json",), not_words=("hub",),
               setup=edit_model(lambda m: (m / "config.json").unlink())),
    model_case("model-config-invalid-json", "@TMP@/m", ("config.json", "not valid JSON"), not_words=("hub",),
               setup=edit_model(lambda m: truncate(m / "config.json"))),
    model_case("model-config-no-model-type", "@TMP@/m", ("config.json", "model_type"), not_words=("hub",),
               setup=edit_model(lambda m: (m / "config.json").write_text(json.dumps(
                   {k: v for k, v in json.loads((m / "config.json").read_text()).items()
                    if k != "model_type"})))),
    model_case("model-config-unknown-type", "@TMP@/m", ("m", "cannot load"), not_words=("hub",),
               setup=edit_model(lambda m: (m / "config.json").write_text(json.dumps(
                   {**json.loads((m / "config.json").read_text()), "model_type": "no-such-arch"})))),
    model_case("model-no-weights", "@TMP@/m", ("no weights",), not_words=("hub",),
               setup=edit_model(lambda m: (m / "model.safetensors").unlink())),
    model_case("model-truncated-weights", "@TMP@/m", ("model.safetensors", "damaged"), not_words=("hub",),
               setup=edit_model(lambda m: truncate(m / "model.safetensors"))),
    model_case("model-no-tokenizer", "@TMP@/m", ("no tokenizer",), not_words=("hub",),
               setup=edit_model(lambda m: [(m / f).unlink()
                                           for f in ("tokenizer.json", "tokenizer_config.json")
                                           if (m / f).exists()])),
    model_case("model-hub-id-offline", "no-org/no-model", ("could not fetch", "no-org/no-model")),
    run_case({"model": {"name": "@TMP@/nowhere"}}, id="run-model-path-missing", words=("does not exist",),
             not_words=("hub",), absent=("runs/.t.partial",)),
    run_case({"model": {"name": "@TMP@/m"}}, id="run-model-truncated-weights", words=("damaged",),
             setup=edit_model(lambda m: truncate(m / "model.safetensors")), absent=("runs/.t.partial",)),
    # --- where results go -----------------------------------------------------------------------------------
    run_case({"output_dir": "@TMP@/out"}, id="run-output-dir-is-file", files={"out": "x"},
             words=("output_dir", "is a file"), before_load=True),
    run_case({"output_dir": "@TMP@/ro/runs"}, id="run-output-dir-read-only", readonly="ro",
             words=("output_dir",), before_load=True, absent=("ro/runs",)),
    run_case(id="run-name-exists", setup=lambda tmp, m: (tmp / "runs" / "t").mkdir(parents=True),
             words=("already exists", "--overwrite"), before_load=True, exists=("runs/t",)),
    Case(id="resume-complete-run", argv=["run", "@CFG@", "--resume"], cfg={},
         setup=lambda tmp, m: (tmp / "runs" / "t").mkdir(parents=True),
         words=("--resume", "already complete"), before_load=True),
    # --- report ---------------------------------------------------------------------------------------------
    Case(id="report-missing", argv=["report", "@TMP@/nothing"], words=("run directory not found",)),
    Case(id="report-not-a-run", argv=["report", "@TMP@"], words=("not a tunescope run directory",)),
    Case(id="report-running", argv=["report", "@TMP@/run"], setup=with_run(status="running"),
         words=("not finished", "running")),
    Case(id="report-failed", argv=["report", "@TMP@/run"], setup=with_run(status="failed"),
         words=("not finished", "failed")),
    Case(id="report-partial-folder", argv=["report", "@TMP@/runs/.t.partial"], setup=partial_run,
         words=(".t.partial", "not finished")),
    Case(id="report-truncated-manifest", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: truncate(r / "manifest.json")), words=("manifest.json:", "not valid JSON")),
    Case(id="report-manifest-list", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "manifest.json").write_text("[]")),
         words=("manifest.json", "JSON object")),
    Case(id="report-manifest-not-utf8", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "manifest.json").write_bytes(b'{"status": "\xff"}')),
         words=("manifest.json", "UTF-8")),
    Case(id="report-manifest-bad-field", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "manifest.json").write_text('{"status": "complete", "seed": "many"}')),
         words=("manifest.json", "seed")),
    Case(id="report-config-not-yaml", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "config.yaml").write_text("name: x\ntraining: [unclosed\n")),
         words=("config.yaml:", "not valid YAML")),
    Case(id="report-config-empty", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "config.yaml").write_text("")), words=("config.yaml", "empty")),
    Case(id="report-truncated-results", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: truncate(r / "eval" / "base" / "results.json")),
         words=("results.json:", "not valid JSON")),
    Case(id="report-results-list", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: (r / "eval" / "tuned" / "results.json").write_text("[1]")),
         words=("results.json", "JSON object")),
    Case(id="report-metrics-bad-line", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: open(r / "metrics.jsonl", "a").write("{broken\n")),
         words=("metrics.jsonl:",)),
    Case(id="report-metrics-no-kind", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: open(r / "metrics.jsonl", "a").write('{"step": 1}\n')),
         words=("metrics.jsonl:", "kind")),
    Case(id="report-train-examples-bad-line", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: open(r / "train_examples.jsonl", "a").write("[]\n")),
         words=("train_examples.jsonl:",)),
    Case(id="report-samples-truncated", argv=["report", "@TMP@/run"],
         setup=with_run(lambda r: truncate(r / "eval" / "base" / "heldout.jsonl", 0.5)),
         words=("heldout.jsonl:",)),
    Case(id="report-set-other-key", argv=["report", "@TMP@/run", "--set", "training.epochs=1"],
         setup=with_run(), words=("--set", "report.")),
    Case(id="report-set-bad-value", argv=["report", "@TMP@/run", "--set", "report.alpha=2"],
         setup=with_run(), words=("--set report.alpha",)),
    Case(id="report-read-only-run", argv=["report", "@TMP@/ro/run"], readonly="ro",
         setup=lambda tmp, m: complete_run(tmp / "ro", m), words=("ro/run", "write"),
         absent=("ro/run/report.html",)),
    # --- compare --------------------------------------------------------------------------------------------
    Case(id="compare-same-run-twice", argv=["compare", "@TMP@/run", "@TMP@/run"], setup=with_run(),
         words=("named twice",), absent=("compare-run-vs-run",)),
    Case(id="compare-same-run-other-spelling", argv=["compare", "@TMP@/run", "@TMP@/run/../run/"],
         setup=with_run(), words=("named twice",)),
    Case(id="compare-missing", argv=["compare", "@TMP@/run", "@TMP@/nope"], setup=with_run(),
         words=("nope", "not found")),
    Case(id="compare-not-a-run", argv=["compare", "@TMP@/run", "@TMP@/empty"],
         setup=lambda tmp, m: (complete_run(tmp, m), (tmp / "empty").mkdir()), words=("empty", "neither")),
    Case(id="compare-unfinished", argv=["compare", "@TMP@/run", "@TMP@/runs/.t.partial"],
         setup=lambda tmp, m: (complete_run(tmp, m), partial_run(tmp, m)), words=("not finished",)),
    Case(id="compare-no-runs", argv=["compare"], words=("Missing argument",)),
    # --- export ---------------------------------------------------------------------------------------------
    Case(id="export-partial-run", argv=["export", "@TMP@/runs/.t.partial", "-o", "@TMP@/out"],
         setup=partial_run, words=("did not complete", "failed"), not_words=("adapter:",),
         absent=("out", ".out.partial")),
    Case(id="export-partial-run-merged",
         argv=["export", "@TMP@/runs/.t.partial", "--merged", "-o", "@TMP@/out"], setup=partial_run,
         words=("did not complete",), absent=("out",)),
    Case(id="export-running-run", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(status="running"), words=("did not complete", "running"), absent=("out",)),
    Case(id="export-no-adapter", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(adapter=False), words=("no adapter/",), absent=("out",)),
    Case(id="export-adapter-truncated", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(lambda r: truncate(r / "adapter" / "adapter_model.safetensors")),
         words=("adapter_model.safetensors", "damaged"), absent=("out",)),
    Case(id="export-adapter-no-weights", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(lambda r: (r / "adapter" / "adapter_model.safetensors").unlink()),
         words=("incomplete",), absent=("out",)),
    Case(id="export-adapter-config-invalid", argv=["export", "@TMP@/run", "--merged", "-o", "@TMP@/out"],
         setup=with_run(lambda r: truncate(r / "adapter" / "adapter_config.json")),
         words=("adapter_config.json", "JSON"), absent=("out",)),
    Case(id="export-output-exists", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         files={"out/keep": "old"}, setup=with_run(), words=("exists", "--overwrite"), exists=("out/keep",)),
    Case(id="export-output-is-file", argv=["export", "@TMP@/run", "-o", "@TMP@/out", "--overwrite"],
         files={"out": "x"}, setup=with_run(), words=("is a file",), exists=("out",)),
    Case(id="export-failed-overwrite-keeps-old", argv=["export", "@TMP@/runs/.t.partial", "-o", "@TMP@/out",
                                                       "--overwrite"],
         files={"out/keep": "old"}, setup=partial_run, words=("did not complete",), exists=("out/keep",)),
    Case(id="export-dtype", argv=["export", "@TMP@/run", "--dtype", "int4"], setup=with_run(),
         words=("--dtype",)),
    Case(id="export-full-without-merged", argv=["export", "@TMP@/run", "-o", "@TMP@/out"],
         setup=with_run(lambda r: (r / "config.yaml").write_text((r / "config.yaml").read_text().replace(
             "method: lora", "method: full"))), words=("--merged",), absent=("out",)),
    Case(id="export-merged-base-gone", argv=["export", "@TMP@/run", "--merged", "-o", "@TMP@/out"],
         setup=lambda tmp, m: complete_run(tmp, copy_model(tmp, m, "gone")) and shutil.rmtree(tmp / "gone"),
         words=("no longer available",), absent=("out", ".out.partial")),
    Case(id="export-ok", argv=["export", "@TMP@/run", "-o", "@TMP@/out"], setup=with_run(), code=0,
         words=("adapter:",), exists=("out/adapter_model.safetensors", "out/tunescope_export.json"),
         absent=(".out.partial",)),
    Case(id="export-merged-ok", argv=["export", "@TMP@/run", "--merged", "-o", "@TMP@/out"], setup=with_run(),
         code=0, words=("merged model:",), exists=("out/config.json", "out/model.safetensors")),
    # --- registry -------------------------------------------------------------------------------------------
    Case(id="registry-show-unknown", argv=["runs", "show", "no-such-run"], words=("no-such-run",)),
    Case(id="registry-leaderboard-unknown-label",
         argv=["runs", "leaderboard", "-t", "gsm8k", "--label", "middle"], words=("middle",)),
]


# ----------------------------------------------------------------- running a case


def fill(text, tmp: Path, model: Path):
    if isinstance(text, bytes):
        return text
    return text.replace("@TMP@", str(tmp)).replace("@MODEL@", str(model)).replace("@CFG@",
                                                                                  str(tmp / "c.yaml"))


def prepare(case: Case, tmp: Path, model: Path) -> list[str]:
    files = {"train.jsonl": GOOD_JSONL, **case.files}
    if case.cfg is not None and "c.yaml" not in files:
        files["c.yaml"] = yaml.safe_dump(merged(BASE_CONFIG, case.cfg), sort_keys=False)
    for name, content in files.items():
        write(tmp / name, fill(content, tmp, model))
    if case.readonly:
        (tmp / case.readonly).mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(tmp, model)
    return [fill(a, tmp, model) for a in case.argv]


def can_bind_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def invoke(argv: list[str], *, before_load: bool, monkeypatch) -> tuple[int, str]:
    from tunescope.cli.commands import app

    if before_load:
        import transformers

        def refuse(*a, **k):
            raise AssertionError("the model was loaded before the error was found")

        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    result = CliRunner().invoke(app, argv)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        return 99, result.output + "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.output


def cli_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "TUNESCOPE_REGISTRY": str(tmp / "registry.sqlite"), "TUNESCOPE_CACHE": str(tmp / "cache"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def invoke_read_only(argv: list[str], tmp: Path, folder: Path) -> tuple[int, str]:
    if os.geteuid() != 0:  # mode bits stop everyone but root
        folder.chmod(0o555)
        try:
            proc = subprocess.run([sys.executable, "-m", "tunescope.cli", *argv], capture_output=True,
                                  text=True, env=cli_env(tmp), timeout=300)
        finally:
            folder.chmod(0o755)
        return proc.returncode, proc.stdout + proc.stderr
    if not can_bind_read_only():
        pytest.skip("running as root without a private mount namespace: no way to make a folder read-only")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), sys.executable, "-m",
                           "tunescope.cli", *argv], capture_output=True, text=True, env=cli_env(tmp),
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def check(case: Case, code: int, output: str, tmp: Path) -> None:
    assert "Traceback" not in output, output
    assert code == case.code, f"exit {code}, expected {case.code}:\n{output}"
    for word in case.words:
        assert word in output, f"{word!r} not in:\n{output}"
    for word in case.not_words:
        assert word not in output, f"{word!r} in:\n{output}"
    if case.code == 2 and case.id != "compare-no-runs":
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output
    for path in case.exists:
        assert (tmp / path).exists(), f"{path} should exist"
    for path in case.absent:
        assert not (tmp / path).exists(), f"{path} should not exist"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))
    monkeypatch.setenv("TUNESCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_user_error(case: Case, isolated: Path, tiny_model_dir: Path, monkeypatch):
    argv = prepare(case, isolated, tiny_model_dir)
    if case.readonly:
        code, output = invoke_read_only(argv, isolated, isolated / case.readonly)
    else:
        code, output = invoke(argv, before_load=case.before_load, monkeypatch=monkeypatch)
    check(case, code, output, isolated)


def test_case_table_covers_every_class():
    prefixes = {c.id.split("-")[0] for c in CASES}
    assert {"cfg", "set", "data", "eval", "model", "run", "report", "compare", "export", "registry",
            "contamination"} <= prefixes
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) + len(FAULTS) >= 100


# ----------------------------------------------------------------- faults: signals, a full disk


def start_run(tmp: Path, model: Path, *extra: str, preexec=None, steps: int = 2000) -> subprocess.Popen:
    cfg = merged(BASE_CONFIG, {"training": {"max_steps": steps, "checkpoint_every": 2, "eval_every": 1000},
                               "prompt": {"max_length": 48}})
    write(tmp / "c.yaml", fill(yaml.safe_dump(cfg, sort_keys=False), tmp, model))
    write(tmp / "train.jsonl", GOOD_JSONL)
    return subprocess.Popen([sys.executable, "-m", "tunescope.cli", "run", str(tmp / "c.yaml"), *extra],
                            env=cli_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def wait_for(path_glob: str, root: Path, proc: subprocess.Popen, timeout: float = 240,
             at_least: int = 1) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list(root.glob(path_glob))) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{path_glob} never appeared")


def _default_sigint() -> None:
    # A shell that starts jobs in the background hands them SIGINT ignored, and Python keeps an ignored
    # SIGINT ignored: restore the default so Ctrl-C reaches the run whatever launched the tests.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fault_sigint(tmp: Path, model: Path) -> None:
    proc = start_run(tmp, model, preexec=_default_sigint)
    wait_for("runs/.t.partial/checkpoints/step-*", tmp, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err, err
    assert "interrupted" in err and ".t.partial" in err and "--resume" in err and "c.yaml" in err, err
    assert json.loads((tmp / "runs" / ".t.partial" / "manifest.json").read_text())["status"] == "interrupted"
    assert not (tmp / "runs" / "t").exists()


def fault_kill_then_resume_past_a_damaged_checkpoint(tmp: Path, model: Path) -> None:
    # Enough steps that the kill lands mid-run on an idle machine too; killed once two checkpoints exist
    # (older ones are pruned as training goes on, so no single step's folder is waited for).
    proc = start_run(tmp, model, steps=400)
    wait_for("runs/.t.partial/checkpoints/step-*", tmp, proc, at_least=2)
    proc.kill()
    proc.communicate(timeout=60)
    partial = tmp / "runs" / ".t.partial"
    assert partial.is_dir() and not (tmp / "runs" / "t").exists()
    checkpoints = sorted((partial / "checkpoints").glob("step-*"))
    assert len(checkpoints) >= 2
    truncate(checkpoints[-1] / "trainable.safetensors")  # the newest one is damaged, the one before it is not
    proc = start_run(tmp, model, "--resume", steps=400)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in out + err
    assert "damaged" in err and checkpoints[-1].name in err and checkpoints[-2].name in err, err
    assert (tmp / "runs" / "t" / "adapter" / "adapter_model.safetensors").is_file()
    assert not partial.exists()


def _limit_file_size(limit: int):
    def preexec() -> None:
        # Writes past the limit then fail with EFBIG (SIGXFSZ, which would kill the process, is ignored).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def fault_disk_full_during_run(tmp: Path, model: Path) -> None:
    # The tiny model's checkpoint files are about 100 kB; the limit lets the run start and fails its writes.
    proc = start_run(tmp, model, preexec=_limit_file_size(40_000), steps=6)
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in out + err, err
    assert proc.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "file too large" in errors[0] and ".t.partial" in errors[0], err
    assert (tmp / "runs" / ".t.partial").is_dir() and not (tmp / "runs" / "t").exists()


def fault_disk_full_during_export(tmp: Path, model: Path) -> None:
    complete_run(tmp, model)
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", "export", str(tmp / "run"), "--merged",
                           "-o", str(tmp / "out")], env=cli_env(tmp), capture_output=True, text=True,
                          timeout=300, preexec_fn=_limit_file_size(20_000))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2 and "file too large" in proc.stderr, proc.stderr
    assert not (tmp / "out").exists() and not (tmp / ".out.partial").exists()


def fault_hub_unreachable_fails_fast(tmp: Path, model: Path) -> None:
    # Without HF_HUB_OFFLINE: offline, the hub client would retry for half a minute, logging every try.
    write(tmp / "test.jsonl", GOOD_JSONL)
    env = {k: v for k, v in cli_env(tmp).items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_HOME"] = str(tmp / "hf")
    proc = subprocess.run([sys.executable, "-m", "tunescope.cli", *[fill(a, tmp, model) for a in EVAL[:2]],
                           "no-org/no-such-model-xyz", *[fill(a, tmp, model) for a in EVAL[3:]]],
                          env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2 and "could not fetch" in proc.stderr, proc.stderr
    # Fast means no retries: one line, no "Retrying" (timing it would make the test depend on the machine).
    assert "Retrying" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


FAULTS = {"hub-unreachable-fails-fast": fault_hub_unreachable_fails_fast, "sigint-during-run": fault_sigint,
          "kill-9-then-resume-past-damaged-checkpoint": fault_kill_then_resume_past_a_damaged_checkpoint,
          "disk-full-during-run": fault_disk_full_during_run,
          "disk-full-during-export": fault_disk_full_during_export}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(name: str, tmp_path: Path, tiny_model_dir: Path):
    if not hasattr(resource, "RLIMIT_FSIZE") and "disk" in name:
        pytest.skip("no RLIMIT_FSIZE on this system")
    FAULTS[name](tmp_path, tiny_model_dir)
