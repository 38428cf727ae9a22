from types import SimpleNamespace

from tunescope.core.modelinfo import logit_softcap, rescales_logits, text_config
from tunescope.evaluate.loglikelihood import _supports_packing


def _model(**config):
    return SimpleNamespace(config=SimpleNamespace(**config))


def test_text_config_of_model_config_and_composite():
    inner = SimpleNamespace(hidden_size=8)
    composite = SimpleNamespace(text_config=inner)
    assert text_config(composite) is inner
    assert text_config(SimpleNamespace(config=composite)) is inner
    plain = SimpleNamespace(hidden_size=4)
    assert text_config(plain) is plain
    assert text_config(None) is None


def test_rescaled_logits_are_seen_by_every_key():
    assert not rescales_logits(_model())
    assert not rescales_logits(_model(logit_scale=1.0))
    for key in ("logit_scale", "logits_scaling", "output_multiplier"):
        assert rescales_logits(_model(**{key: 0.5}))
    assert logit_softcap(_model(final_logit_softcapping=30.0)) == 30.0


def test_packed_scoring_refuses_a_head_with_output_multiplier():
    class Model:
        @classmethod
        def is_backend_compatible(cls):
            return True

        def __init__(self, **config):
            self.config = SimpleNamespace(**config)

        def get_decoder(self):
            return object()

        def get_output_embeddings(self):
            return object()

    assert _supports_packing(Model())
    assert not _supports_packing(Model(output_multiplier=0.25))


def test_attention_interface_support_is_read_through_the_public_check(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunescope.core.modelinfo import routes_attention_through_interface

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert routes_attention_through_interface(model)
    assert routes_attention_through_interface(get_peft_model(model,
                                                             LoraConfig(r=2, target_modules=["q_proj"])))

    class OwnAttention(type(model)):
        _supports_attention_backend = False  # what is_backend_compatible() reports today

    assert not routes_attention_through_interface(OwnAttention(model.config))
    assert not routes_attention_through_interface(SimpleNamespace(config=model.config))
