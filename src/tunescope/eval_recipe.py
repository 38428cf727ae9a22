"""`tunescope eval`: one model, optionally with a PEFT adapter, on tasks and groups, without training.

The options are `eval.*` keys validated exactly as in a run config; what the command shows comes
back as `Evaluated`: the results, which engine path ran and why, the dtype and why, the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunescope import run_record as rr
from tunescope.config import EvalConfig, ModelConfig
from tunescope.config_loading import from_options
from tunescope.errors import UserError, check_writable_dir
from tunescope.pipeline import ProgressSink
from tunescope.runio import write_json


@dataclass
class Evaluated:
    """What `tunescope eval` shows: the results, which engine path ran and why, the dtype and why, the table."""

    results: dict
    engine_lines: list[str]
    dtype_line: str
    table: str


def evaluate_model(model: str, tasks: list[str], *, data_paths: dict[str, str] | None = None,
                   adapter: Path | None = None, output: Path | None = None, dtype: str = "auto",
                   backend: str = "native", progress: ProgressSink | None = None, **options) -> Evaluated:
    """Evaluate one model (optionally with a PEFT adapter) on tasks and groups. `options` are `eval.*`
    keys (limit, batch_size, max_new_tokens, num_fewshot, samples, temperature, engine), validated and
    meaning exactly what they mean in a run config."""
    from tunescope.evaluate import evaluate, format_results_table, load_tasks
    from tunescope.evaluate.enginepath import check_engine, engine_lines
    from tunescope.models import load_model

    progress = progress or ProgressSink()
    check_engine(options.get("engine", "auto"), where="--engine")
    ev = from_options(EvalConfig, tasks=tasks, data_path=data_paths or {}, **options)
    model_cfg = from_options(ModelConfig, name=model, dtype=dtype)
    if ev.engine != "auto" and backend != "native":
        raise UserError(f"applies only to --backend native (backend '{backend}' runs its own engine)", where="--engine")
    if output is not None:
        # Checked now: results that cannot be written are otherwise lost after the whole evaluation.
        if output.exists() and not output.is_dir():
            raise UserError("is a file, not a folder", where=f"--output {output}")
        check_writable_dir(output, where=f"--output {output}")
    if adapter is not None:
        check_adapter_dir(adapter)
    task_objs, groups = load_tasks(ev.tasks, data_paths=ev.data_path, num_fewshot=ev.num_fewshot, samples=ev.samples,
                                   temperature=ev.temperature)
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
                       max_new_tokens=ev.max_new_tokens, out_dir=output, progress=progress.advance, backend=backend,
                       groups=groups, engine=ev.engine)
    if loaded.dtype_choice is not None:
        results.setdefault("tunescope", {})["dtype_choice"] = loaded.dtype_choice.record()
        if output is not None:  # written by the engine before the choice was added
            write_json(output / rr.RESULTS, results)
    return Evaluated(results, engine_lines(results), _dtype_line(loaded.dtype_choice, loaded.dtype),
                     format_results_table(results))


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
