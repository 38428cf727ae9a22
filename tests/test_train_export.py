"""Export: the merged model is plain transformers and agrees with base + adapter; adapter-only is PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from conftest import give_adapter_an_effect
from tunescope.config.loading import dump_config
from tunescope.config.run_config import ModelConfig, RunConfig, TrainingConfig
from tunescope.core.errors import UserError
from tunescope.recipes.export import base_source, export_run
from tunescope.store.fileio import write_json, write_text_atomic
from tunescope.train.adapters import build_trainable

PROMPTS = ["Instruction: Tom has 3 apples and buys 4 more.\nResponse:",
           "A shop sells 12 pens for $3 each. What", "0123456789 + - * / ="]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_run(tmp_path: Path, model_dir: Path, source: str | None = None) -> Path:
    """A run folder as the pipeline leaves it: config.yaml, manifest.json and a non-trivial adapter."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = build_trainable(AutoModelForCausalLM.from_pretrained(model_dir), TrainingConfig())
    give_adapter_an_effect(model, 0.2)
    run = tmp_path / "run"
    model.save_pretrained(run / "adapter")
    cfg = RunConfig(name="run", model={"name": str(model_dir)})
    write_text_atomic(run / "config.yaml", dump_config(cfg))
    write_json(run / "manifest.json", {"name": "run", "status": "complete",
                                       "model": {"name": str(model_dir), "source": source or str(model_dir)}})
    return run


def test_merged_export_agrees_with_base_plus_adapter(tmp_path, tiny_model_dir, tiny_tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = _trained_run(tmp_path, tiny_model_dir)
    merged_dir = export_run(run, merged=True)
    adapter_dir = export_run(run)
    assert merged_dir == run / "export" / "merged" and adapter_dir == run / "export" / "adapter"

    # A plain model folder: weights without adapter tensors, no adapter config.
    assert not (merged_dir / "adapter_config.json").exists()
    with safe_open(str(merged_dir / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora" in k or "base_layer" in k]
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["r"] == 8

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                          adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for prompt in PROMPTS:
        ids = tiny_tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = reference(input_ids=ids).logits
            torch.testing.assert_close(merged(input_ids=ids).logits, want, rtol=1e-4, atol=1e-5)
            assert (base(input_ids=ids).logits - want).abs().max() > 1e-2  # the adapter does change the model
            kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
            assert torch.equal(merged.generate(ids, **kw), reference.generate(ids, **kw))


def test_export_cli_and_errors(tmp_path, tiny_model_dir):
    from tunescope.cli.commands import app

    run = _trained_run(tmp_path, tiny_model_dir)
    result = CliRunner().invoke(app, ["export", str(run), "--merged", "--output", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "config.json").is_file()
    with pytest.raises(UserError, match="exists"):
        export_run(run, tmp_path / "m", merged=True)
    with pytest.raises(UserError, match="run directory not found"):
        export_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError,
                       match=r"not a tunescope run directory \(missing config\.yaml, manifest\.json\)"):
        export_run(tmp_path / "empty")


def test_base_weights_come_from_where_the_run_read_them(tmp_path, tiny_model_dir):
    model = ModelConfig(name=str(tiny_model_dir))
    assert base_source(model, str(tiny_model_dir)) == str(tiny_model_dir)
    # The recorded folder is gone (e.g. a cleared cache): fall back to the configured model.
    assert base_source(model, str(tmp_path / "gone")) == str(tiny_model_dir)
    with pytest.raises(UserError, match="no longer available"):
        base_source(ModelConfig(name=str(tmp_path / "missing.gguf")), "/gone")


@pytest.mark.real_weights
def test_gguf_alias_base_is_the_dequantized_cache_folder():
    from tunescope.models import materialize

    try:
        cached = materialize("smollm2-135m-instruct")
    except UserError:
        pytest.skip("SmolLM2 offline weights are not installed")
    # A run trained on the GGUF alias whose recorded cache folder was removed: rebuilt from the GGUF.
    source = base_source(ModelConfig(name="smollm2-135m-instruct"), "/cleared/cache")
    assert Path(source) == cached and (Path(source) / "config.json").is_file()
