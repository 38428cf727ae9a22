import os
import subprocess
import sys

import pytest

from tunescope.core.errors import UserError
from tunescope.models import ALIASES, load_model, pick_dtype
from tunescope.models.loading import _resolve_source, gguf_cache_name, materialize


def test_seed_model_aliases_exist():
    expected = {"smollm2-135m-instruct", "gemma3-270m", "qwen2-0.5b-instruct", "falcon3-1b-instruct",
                "llama-3.2-1b", "tinyllama-1.1b", "open-llama-3b", "phi-2", "mistral-7b"}
    assert expected <= set(ALIASES)
    assert ALIASES["qwen2-0.5b-instruct"].hub_id == "Qwen/Qwen2-0.5B-Instruct"


def test_unknown_alias_lists_known_ones():
    with pytest.raises(UserError, match="unknown model alias 'smollm9'.*smollm2-135m-instruct"):
        _resolve_source("smollm9", None)


def test_missing_local_path():
    with pytest.raises(UserError, match="does not exist"):
        _resolve_source("/nonexistent/model.gguf", None)


def test_gguf_cache_folder_is_the_same_in_every_process(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF weights")
    os.utime(gguf, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    name = gguf_cache_name(gguf)
    code = "import sys, pathlib; from tunescope.models.loading import gguf_cache_name; " \
           "print(gguf_cache_name(pathlib.Path(sys.argv[1])))"
    # String hashing is salted per process: a name built on hash() would differ here.
    others = {subprocess.run([sys.executable, "-c", code, str(gguf)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
              for seed in (1, 2)}
    assert others == {name} and name.startswith("model-") and len(name) == len("model-") + 16
    # A cached folder is found again instead of dequantizing the file once more.
    monkeypatch.setenv("TUNESCOPE_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "models" / name
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    assert materialize(str(gguf)) == cached
    # Another file (or the same path rewritten) gets its own folder.
    gguf.write_bytes(b"other GGUF weights")
    assert gguf_cache_name(gguf) != name


def test_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # nothing cached here
    with pytest.raises(UserError,
                       match="could not fetch model 'org-that-does-not-exist/model'.*local directory"):
        load_model("org-that-does-not-exist/model")


def test_local_directory_loads(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), dtype="float32")
    assert lm.tokenizer.pad_token is not None and lm.model.config.num_hidden_layers == 2
    assert str(lm.dtype) == "torch.float32" and lm.device.type == "cpu"


def test_auto_dtype_on_cpu_is_the_measured_faster_one(monkeypatch, tmp_path):
    import torch

    from tunescope.models import dtype_choice

    rates = {}
    monkeypatch.setattr(dtype_choice, "time_matmul", lambda dtype, shape: rates[dtype])
    rates.update({torch.float32: 218.0, torch.bfloat16: 117.0})  # AVX512-BF16 without AMX: bf16 slower
    assert pick_dtype("auto", torch.device("cpu"), cache_dir=str(tmp_path / "a")) == torch.float32
    rates.update({torch.float32: 100.0, torch.bfloat16: 400.0})  # AMX
    assert pick_dtype("auto", torch.device("cpu"), cache_dir=str(tmp_path / "b")) == torch.bfloat16
    assert pick_dtype("float16", torch.device("cpu")) == torch.float16


def test_gguf_file_picks_that_file_in_a_directory(tmp_path, monkeypatch):
    # model.gguf_file chooses among several GGUF files of one folder (or hub repository).
    monkeypatch.setenv("TUNESCOPE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "weights"
    folder.mkdir()
    for stem in ("a-q4", "b-q8"):
        (folder / f"{stem}.gguf").write_bytes(stem.encode())
    dequantized = []
    monkeypatch.setattr("tunescope.models.loading._dequantize_to_directory",
                        lambda gguf, target: dequantized.append(gguf.name))
    source = _resolve_source(str(folder), None, gguf_file="b-q8.gguf")
    assert dequantized == ["b-q8.gguf"] and source.endswith(gguf_cache_name(folder / "b-q8.gguf"))
    with pytest.raises(UserError, match="no file 'c.gguf'"):
        _resolve_source(str(folder), None, gguf_file="c.gguf")
