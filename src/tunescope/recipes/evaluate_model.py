"""`tunescope eval`: one model, optionally with a PEFT adapter, on tasks and groups, without training.

The options are `eval.*` keys validated exactly as in a run config; what the command shows comes
back as `Evaluated`: the results, which engine path ran and why, the dtype and why, the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunescope.config.loading import from_options
from tunescope.config.run_config import EvalConfig, ModelConfig
from tunescope.core.errors import UserError, check_writable_dir
from tunescope.recipes.heldout import HELDOUT, read_run_heldout
from tunescope.recipes.run import ProgressSink
from tunescope.store import run_folder as rr
from tunescope.store.fileio import write_json


@dataclass
class Evaluated:
    """What `tunescope eval` shows: the results, which engine path ran and why, the dtype and why, the
    table."""

    results: dict
    engine_lines: list[str]
    dtype_line: str
    table: str


def evaluate_model(model: str | None, tasks: list[str] | None, *, data_paths: dict[str, str] | None = None,
                   adapter: Path | None = None, output: Path | None = None, dtype: str | None = None,
                   backend: str = "native", progress: ProgressSink | None = None,
                   heldout_from: Path | None = None, **options) -> Evaluated:
    """Evaluate one model (optionally with a PEFT adapter) on tasks and groups. `options` are `eval.*`
    keys (limit, batch_size, max_new_tokens, num_fewshot, samples, temperature, engine), validated and
    meaning exactly what they mean in a run config.

    `heldout_from` names a finished run: its held-out problems become the task `heldout` (the default
    task), and the run's eval settings, dtype and base model apply wherever `options`, `dtype` and
    `model` do not say otherwise, so the responses can be compared with the run's item for item."""
    from tunescope.evaluate import evaluate, format_results_table, load_tasks
    from tunescope.evaluate.enginepath import check_engine, engine_lines
    from tunescope.models import load_model

    progress = progress or ProgressSink()
    tasks = _task_names(tasks, heldout_from)
    check_engine(options.get("engine", "auto"), where="--engine")
    run = None
    if heldout_from is not None:
        run = read_run_heldout(heldout_from)
        options = run.eval_settings(options, native=backend == "native")
        dtype, model = dtype or run.dtype, model or run.base_model()
    if model is None:
        raise UserError("name the model to evaluate (or a run with --heldout-from)", where="--model")
    ev = from_options(EvalConfig, tasks=tasks, data_path=data_paths or {}, **options)
    model_cfg = from_options(ModelConfig, name=model, dtype=dtype or "auto")
    if ev.engine != "auto" and backend != "native":
        raise UserError(f"applies only to --backend native (backend '{backend}' runs its own engine)",
                        where="--engine")
    if output is not None:
        # Checked now: results that cannot be written are otherwise lost after the whole evaluation.
        if output.exists() and not output.is_dir():
            raise UserError("is a file, not a folder", where=f"--output {output}")
        check_writable_dir(output, where=f"--output {output}")
    if adapter is not None:
        check_adapter_dir(adapter)
    builtin = [t for t in ev.tasks if t != HELDOUT]
    task_objs, groups = load_tasks(builtin, data_paths=ev.data_path, num_fewshot=ev.num_fewshot,
                                   samples=ev.samples, temperature=ev.temperature) if builtin else ([], [])
    if run is not None:  # first, as a run evaluates it
        task_objs.insert(0, run.task(samples=ev.samples, temperature=ev.temperature))
    loaded = load_model(model_cfg.name, dtype=model_cfg.dtype)
    m = loaded.model
    if adapter is not None:
        import pickle

        from peft import PeftModel

        from tunescope.models.loading import pickled_weights_refused

        try:
            m = PeftModel.from_pretrained(m, adapter)
        except pickle.UnpicklingError:
            raise pickled_weights_refused(adapter) from None
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise UserError(f"cannot apply the adapter to this model ({type(e).__name__}: {first})",
                            where=str(adapter)) from None
    results = evaluate(m, loaded.tokenizer, task_objs, limit=ev.limit, batch_size=ev.batch_size,
                       max_new_tokens=ev.max_new_tokens, out_dir=output, progress=progress.advance,
                       backend=backend, groups=groups, engine=ev.engine)
    added = {"dtype_choice": loaded.dtype_choice.record()} if loaded.dtype_choice is not None else {}
    if heldout_from is not None:
        added["heldout_from"] = str(heldout_from)
    if added:
        results.setdefault("tunescope", {}).update(added)
        if output is not None:  # written by the engine before these were added
            write_json(output / rr.RESULTS, results)
    return Evaluated(results, engine_lines(results), _dtype_line(loaded.dtype_choice, loaded.dtype),
                     format_results_table(results))


def _task_names(tasks: list[str] | None, heldout_from: Path | None) -> list[str]:
    """The tasks asked for: `heldout` exactly when a run is named (and then by default)."""
    if heldout_from is None:
        if tasks is None:
            raise UserError("name the tasks to evaluate, e.g. --tasks gsm8k,hellaswag", where="--tasks")
        if HELDOUT in tasks:
            raise UserError("the 'heldout' task is a run's held-out problems: name the run with "
                            "--heldout-from RUN",
                            where="--tasks")
        return tasks
    if tasks is None:
        return [HELDOUT]
    if HELDOUT not in tasks:
        raise UserError(f"--heldout-from scores a run's held-out problems: add '{HELDOUT}' to --tasks "
                        f"(or leave --tasks out)", where="--tasks")
    return tasks


def check_adapter_dir(adapter: Path) -> None:
    """A PEFT adapter folder whose config reads, checked before the model loads."""
    import json

    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise UserError("not a PEFT adapter directory (no adapter_config.json)", where=str(adapter))
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"not valid JSON ({e})", where=str(config)) from None
    if not isinstance(data, dict) or not isinstance(data.get("peft_type"), str):
        raise UserError("not a PEFT adapter config (a JSON object with 'peft_type')", where=str(config))
    if not any((adapter / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise UserError("no adapter weights (adapter_model.safetensors)", where=str(adapter))


def _dtype_line(choice, dtype) -> str:
    """The header above the results table: scores depend on the dtype, so say which and why."""
    name = str(dtype).replace("torch.", "")
    if choice is None:
        return f"dtype: {name}"
    return f"dtype: {name} — {'auto: ' if choice.requested == 'auto' else ''}{choice.reason}"
