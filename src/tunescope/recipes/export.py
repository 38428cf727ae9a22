"""Export a trained run: a merged plain-transformers model, or the adapter alone in PEFT format.

`tunescope export RUN --merged` loads the base weights the run trained on, applies the adapter,
folds it into the weights and saves a safetensors model that loads with `AutoModelForCausalLM`
alone (no tunescope, no peft). The base is read from where the run read it: the run's manifest
records `model.source`, which for a GGUF model is the dequantized safetensors folder in the cache,
re-created from the GGUF file if the cache was cleared. A QLoRA adapter is merged into the
unquantized base (merging into 4-bit weights would round the update away).

Without `--merged`, the adapter folder is copied as PEFT wrote it; its `adapter_config.json` names
the base it was trained on. Note that a GGUF-derived base is not bit-identical to the hub's weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunescope.config.run_config import ModelConfig
from tunescope.core.errors import UserError, check_writable_dir, one_line, storage_error
from tunescope.store.fileio import write_json
from tunescope.store.layout import ADAPTER, EXPORT_DIR, MANIFEST, is_partial_name
from tunescope.store.lock import run_lock
from tunescope.store.replace_guard import check_export_target
from tunescope.store.run_folder import RunRecord, open_run


def _trained_run(run_dir: Path) -> RunRecord:
    """The run, only if it completed and its adapter/ is whole: a failed or interrupted run (a
    `.<name>.partial` folder) may hold no weights, or half-written ones, and is never exported."""
    record = open_run(run_dir, require_complete=False)
    if record.manifest.status != "complete":
        partial = is_partial_name(run_dir.name)
        raise UserError(f"the run did not complete (status: {record.manifest.status or 'unknown'}"
                        f"{', an unfinished run folder' if partial else ''}); only a complete run is "
                        "exported (continue it with `tunescope run CONFIG --resume`)",
                        where=str(run_dir / MANIFEST))
    if not record.adapter_dir.is_dir():
        raise UserError("the run has no adapter/ folder (was it trained? `tunescope train` writes one)",
                        where=str(run_dir))
    return record


def _check_weights(folder: Path, *, full: bool) -> None:
    """Every file a loader needs is there and reads: the config as JSON, each safetensors file whole."""
    from safetensors import safe_open

    config = folder / ("config.json" if full else "adapter_config.json")
    if not config.is_file():
        raise UserError(f"the adapter is incomplete (no {config.name})", where=str(folder))
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"not a valid JSON config ({e})", where=str(config)) from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise UserError("the adapter is incomplete (no .safetensors weights)", where=str(folder))
    for path in weights:
        try:
            # Opening checks the header against the file's size, so a file cut short fails here.
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    f.get_slice(key)
        except Exception as e:  # safetensors raises its own error types for a damaged file
            raise UserError(f"damaged weights file ({str(e).splitlines()[0][:160]})",
                            where=str(path)) from None


def base_source(model: ModelConfig, recorded: str | None) -> str:
    """The directory (or hub id) of the base weights the run trained on; `recorded` is the manifest's
    `model.source`, where the run read them."""
    from tunescope.models import materialize

    if recorded and Path(recorded).is_dir():
        return recorded
    name = model.name
    try:
        # An alias with offline (GGUF) weights or a .gguf file: rebuild the dequantized cache folder.
        return str(materialize(name, model.cache_dir))
    except UserError:
        if recorded and not Path(recorded).is_absolute() and "/" in recorded:
            return recorded  # a hub id; transformers' cache (or the network) provides it
        raise UserError(f"the base weights the run trained on ({recorded or name}) are no longer available",
                        where=f"{MANIFEST} model.source") from None


def export_run(run_dir: str | Path, output: str | Path | None = None, *, merged: bool = False,
               dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write the export and return its folder (default: `<run>/export/merged` or `<run>/export/adapter`)."""
    run_dir = Path(run_dir)
    # The run stays as it is while it is exported: no `run --overwrite` or `report` writes it meanwhile.
    with run_lock(run_dir, existing_only=True):
        return _export_locked(run_dir, output, merged=merged, dtype=dtype, overwrite=overwrite)


def _export_locked(run_dir: Path, output: str | Path | None, *, merged: bool, dtype: str,
                   overwrite: bool) -> Path:
    record = _trained_run(run_dir)
    method = record.method
    out = Path(output) if output else run_dir / EXPORT_DIR / ("merged" if merged else ADAPTER)
    if out.exists() and not overwrite:
        raise UserError("the output folder exists; pass --overwrite or another --output", where=str(out))
    if out.exists() and not out.is_dir():
        raise UserError("is a file, not a folder", where=str(out))
    check_export_target(run_dir, out, overwrite)
    if method == "full" and not merged:
        raise UserError("a full fine-tune has no adapter to export; use --merged for the full model",
                        where="--merged")
    _check_weights(record.adapter_dir, full=method == "full")
    check_writable_dir(out.parent, where="--output")
    # Written beside the target and renamed into place: a failed export leaves no half-written
    # folder, and an existing export is replaced only by a finished one.
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_export(record, tmp, merged=merged, dtype=dtype)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and (err := storage_error(e, out)) is not None:
            raise err from None
        if isinstance(e, OSError):  # shutil.Error too: a link loop or an unreadable file in the adapter
            raise UserError(f"cannot copy the run's files ({one_line(e)})",
                            where=str(record.adapter_dir)) from None
        raise
    return out


def _write_export(record: RunRecord, out: Path, *, merged: bool, dtype: str) -> None:
    adapter = record.adapter_dir
    method = record.method
    if not merged:
        shutil.copytree(adapter, out)
        _provenance(out, record, merged=False, base=None)
        return

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    base = str(adapter) if method == "full" else base_source(record.config.model,
                                                             record.manifest.model.source)
    try:
        if method == "full":
            model = AutoModelForCausalLM.from_pretrained(adapter, dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(adapter)
        else:
            from peft import PeftModel

            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        # The weights were checked above; what fails here is the base they are merged into.
        raise UserError(f"cannot load the weights to merge ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})",
                        where=base) from None
    # A merged model is a plain model: no quantization or adapter bookkeeping in its config.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _provenance(out, record, merged=True, base=base)


def _provenance(out: Path, record: RunRecord, *, merged: bool, base: str | None) -> None:
    """A small note beside the weights saying where they came from (loaders ignore it)."""
    if base is None and (out / "adapter_config.json").is_file():
        base = json.loads((out / "adapter_config.json").read_text()).get("base_model_name_or_path")
    source = record.manifest.model.source or ""
    gguf_note = Path(source) / "SOURCE" if source else None
    write_json(out / "tunescope_export.json", {
        "run": str(record.path.resolve()), "run_name": record.manifest.name, "method": record.method,
        "merged": merged, "base_model": record.model, "base_weights": base,
        # The cache folder of a GGUF model says so in SOURCE; such weights differ from the hub's.
        "base_dequantized_from": gguf_note.read_text().strip() if gguf_note and gguf_note.is_file() else None,
    })
