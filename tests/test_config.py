import pytest

from tunescope.config.loading import dump_config, load_config
from tunescope.config.run_config import DEFAULT_TEMPLATE, RunConfig
from tunescope.core.errors import UserError


def test_defaults_match_reference_hyperparameters():
    cfg = RunConfig()
    t = cfg.training
    assert (t.lora.r, t.lora.alpha, t.lora.dropout, t.lora.bias) == (8, 16, 0.1, "none")
    assert (t.learning_rate, t.epochs, t.gradient_accumulation, t.early_stopping_patience) == (2e-4, 3, 1, 5)
    assert cfg.prompt.template == DEFAULT_TEMPLATE == "Instruction: {question}\nResponse: {answer}"
    assert cfg.data.val_fraction == 0.1


def test_unknown_key_names_key_and_allowed(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  epocs: 2\n")
    with pytest.raises(UserError) as e:
        load_config(p)
    msg = str(e.value)
    assert "training.epocs" in msg and "epochs" in msg and str(p) in msg


def test_bad_value_names_key_and_reason(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  learning_rate: -1\n")
    with pytest.raises(UserError, match=r"training\.learning_rate.*greater than 0"):
        load_config(p)


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ntraining: [unclosed\n")
    with pytest.raises(UserError, match=r"c\.yaml:\d+: not valid YAML"):
        load_config(p)


def test_overrides_are_validated_like_file_keys():
    cfg = load_config(None, ["training.epochs=1", "eval.tasks=[heldout,gsm8k]", "model.name=org/model"])
    assert (cfg.training.epochs == 1 and cfg.eval.tasks == ["heldout", "gsm8k"]
            and cfg.model.name == "org/model")
    with pytest.raises(UserError, match="unknown key 'training.nope'"):
        load_config(None, ["training.nope=1"])
    with pytest.raises(UserError, match="--set"):
        load_config(None, ["training.epochs"])


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "..", "a b"])
def test_run_name_cannot_escape_runs_folder(name):
    with pytest.raises(UserError, match="key 'name'"):
        load_config(None, [f"name={name}"])


def test_template_must_have_both_fields():
    with pytest.raises(UserError, match="prompt.template"):
        load_config(None, ["prompt.template=Just {question}"])


def test_dump_roundtrip(tmp_path):
    cfg = load_config(None, ["training.epochs=2", "name=x"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_eval_command_defaults_are_the_config_defaults():
    import inspect

    from tunescope.cli import commands as cli
    from tunescope.config.run_config import EvalConfig, ModelConfig

    options = inspect.signature(cli.eval_).parameters
    ev = EvalConfig()
    assert options["limit"].default == str(ev.limit) and options["batch_size"].default == str(ev.batch_size)
    for key in ("max_new_tokens", "num_fewshot", "samples", "temperature", "engine"):
        assert options[key].default == getattr(ev, key), key
    assert options["dtype"].default == ModelConfig().dtype
    # No cap by default: each task generates up to its own max_gen_toks, under `run` and `eval` alike.
    assert ev.max_new_tokens is None


def test_eval_batch_size_may_be_auto():
    assert load_config(None, ["eval.batch_size=auto"]).eval.batch_size == "auto"
    assert load_config(None, ["eval.batch_size=4"]).eval.batch_size == 4
    with pytest.raises(UserError, match="eval.batch_size"):
        load_config(None, ["eval.batch_size=0"])


def test_options_are_validated_like_config_keys():
    from tunescope.config.loading import from_options
    from tunescope.config.run_config import EvalConfig

    assert from_options(EvalConfig, limit="7", batch_size="auto").limit == 7
    with pytest.raises(UserError, match="^--samples: must be at least 1"):
        from_options(EvalConfig, samples=0)
