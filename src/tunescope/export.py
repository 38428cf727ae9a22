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

import yaml

from tunescope.errors import UserError
from tunescope.runio import read_json, write_json


def _run_info(run_dir: Path) -> tuple[dict, dict, Path]:
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "manifest.json").is_file():
        raise UserError("not a tunescope run directory (missing config.yaml or manifest.json)", where=str(run_dir))
    adapter = run_dir / "adapter"
    if not adapter.is_dir():
        raise UserError("the run has no adapter/ folder (was it trained? `tunescope train` writes one)",
                        where=str(run_dir))
    return yaml.safe_load((run_dir / "config.yaml").read_text()), read_json(run_dir / "manifest.json"), adapter


def base_source(config: dict, manifest: dict) -> str:
    """The directory (or hub id) of the base weights the run trained on."""
    from tunescope.models import materialize

    recorded = (manifest.get("model") or {}).get("source")
    if recorded and Path(recorded).is_dir():
        return recorded
    name = config["model"]["name"]
    try:
        # An alias with offline (GGUF) weights or a .gguf file: rebuild the dequantized cache folder.
        return str(materialize(name, config["model"].get("cache_dir")))
    except UserError:
        if recorded and not Path(recorded).is_absolute() and "/" in recorded:
            return recorded  # a hub id; transformers' cache (or the network) provides it
        raise UserError(f"the base weights the run trained on ({recorded or name}) are no longer available",
                        where="manifest.json model.source") from None


def export_run(run_dir: str | Path, output: str | Path | None = None, *, merged: bool = False,
               dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write the export and return its folder (default: `<run>/export/merged` or `<run>/export/adapter`)."""
    run_dir = Path(run_dir)
    config, manifest, adapter = _run_info(run_dir)
    method = config.get("training", {}).get("method", "lora")
    out = Path(output) if output else run_dir / "export" / ("merged" if merged else "adapter")
    if out.exists():
        if not overwrite:
            raise UserError("the output folder exists; pass --overwrite or another --output", where=str(out))
        shutil.rmtree(out)
    if method == "full" and not merged:
        raise UserError("a full fine-tune has no adapter to export; use --merged for the full model",
                        where="--merged")
    if not merged:
        shutil.copytree(adapter, out)
        _provenance(out, run_dir, config, manifest, merged=False, base=None)
        return out

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(adapter, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(adapter)
        base = str(adapter)
    else:
        from peft import PeftModel

        base = base_source(config, manifest)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(base)
    # A merged model is a plain model: no quantization or adapter bookkeeping in its config.
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _provenance(out, run_dir, config, manifest, merged=True, base=base)
    return out


def _provenance(out: Path, run_dir: Path, config: dict, manifest: dict, *, merged: bool, base: str | None) -> None:
    """A small note beside the weights saying where they came from (loaders ignore it)."""
    if base is None and (out / "adapter_config.json").is_file():
        base = json.loads((out / "adapter_config.json").read_text()).get("base_model_name_or_path")
    source = (manifest.get("model") or {}).get("source") or ""
    gguf_note = Path(source) / "SOURCE" if source else None
    write_json(out / "tunescope_export.json", {
        "run": str(run_dir.resolve()), "run_name": manifest.get("name"), "method": config["training"]["method"],
        "merged": merged, "base_model": config["model"]["name"], "base_weights": base,
        # The cache folder of a GGUF model says so in SOURCE; such weights differ from the hub's.
        "base_dequantized_from": gguf_note.read_text().strip() if gguf_note and gguf_note.is_file() else None,
    })
