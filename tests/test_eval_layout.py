"""The column-major weight layout used during evaluation changes speed only: same values, same outputs, and
the model is handed back exactly as it came."""

import torch

from tunescope.evaluate.layout import column_major_linears


def test_layout_keeps_values_and_restores_the_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.inference_mode():
        expected = model(input_ids=ids).logits
    with column_major_linears(model) as converted:
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        # lm_head shares its weight with the embedding: converted once, not twice.
        assert converted == len({id(m.weight) for m in linears}) > 0
        assert all(m.weight.stride() == (1, m.weight.shape[0]) for m in linears)
        with torch.inference_mode():
            inside = model(input_ids=ids).logits
    torch.testing.assert_close(inside, expected, rtol=1e-5, atol=1e-5)
    for name, p in model.named_parameters():
        assert p.is_contiguous(), name
        assert torch.equal(p, before[name]), name
    assert model.lm_head.weight is model.model.embed_tokens.weight
