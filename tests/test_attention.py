"""The engine's own attention functions give what transformers' SDPA attention gives."""

import pytest
import torch

from tunescope.evaluate.attention import (
    GROUPED,
    SEGMENTS,
    Segment,
    SegmentPlan,
    supports_own_attention,
    use_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gqa_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=97, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


@torch.inference_mode()
def test_segments_see_only_their_document_and_context():
    model = gqa_model()
    decoder = model.get_decoder()
    prefix, doc_a, doc_b, choice = [5, 6, 7, 8], [11, 12, 13], [21, 22, 23, 24, 25], [31, 32]
    # Reference: each document (with the prefix, and its choice after it) run alone with plain SDPA.
    ref_a = decoder(input_ids=torch.tensor([prefix + doc_a])).last_hidden_state[0, len(prefix):]
    ref_b = decoder(input_ids=torch.tensor([prefix + doc_b + choice])).last_hidden_state[0, len(prefix):]
    out = decoder(input_ids=torch.tensor([prefix]), use_cache=True)
    from tunescope.evaluate.kvcache import layer_kv_pairs

    prefix_kv = [(k.clone(), v.clone()) for k, v in layer_kv_pairs(out.past_key_values)]
    # Flat row: doc_a | doc_b | choice (reads doc_b), positions continuing after the prefix.
    tokens = doc_a + doc_b + choice
    positions = [4, 5, 6] + [4, 5, 6, 7, 8] + [9, 10]
    plan = SegmentPlan([Segment(0, 3), Segment(3, 8), Segment(8, 10, reads=[(3, 8)])], prefix_kv=prefix_kv)
    assert model.config._attn_implementation == "sdpa"
    with use_attention(model, SEGMENTS):
        flat = decoder(input_ids=torch.tensor([tokens]), position_ids=torch.tensor([positions]),
                       use_cache=False, segment_plan=plan).last_hidden_state[0]
    assert model.config._attn_implementation == "sdpa"  # restored
    torch.testing.assert_close(flat[:3], ref_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flat[3:], ref_b, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_grouped_attention_equals_sdpa_with_masks_and_several_queries():
    model = gqa_model()
    ids = torch.randint(1, 97, (3, 9))
    # Left padding in row 1, so the additive mask matters; 9 query positions per row.
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, :3] = 0
    ref = model(input_ids=ids, attention_mask=mask).logits
    ref_one = model(input_ids=ids[:, :1]).logits
    with use_attention(model, GROUPED):
        got = model(input_ids=ids, attention_mask=mask).logits
        one = model(input_ids=ids[:, :1]).logits  # one query per row: heads regrouped, no mask
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, 3:], ref[1, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], ref[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one, ref_one, atol=1e-5, rtol=1e-5)


def test_previous_attention_is_restored_after_an_error_and_soft_capping_is_refused():
    model = gqa_model()
    with pytest.raises(ValueError), use_attention(model, GROUPED):
        assert model.config._attn_implementation == GROUPED
        raise ValueError("boom")
    assert model.config._attn_implementation == "sdpa"
    assert supports_own_attention(model)
    model.config.attn_logit_softcapping = 50.0
    assert not supports_own_attention(model)


@torch.inference_mode()
def test_segment_attention_refuses_a_layer_that_does_not_say_which_it_is():
    """Each layer reads its own slice of the shared prefix; without layer_idx there is no right slice."""
    model = gqa_model()
    decoder = model.get_decoder()
    from tunescope.evaluate.kvcache import layer_kv_pairs

    prefix_kv = [(k.clone(), v.clone()) for k, v in
                 layer_kv_pairs(decoder(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True).past_key_values)]
    del decoder.layers[1].self_attn.layer_idx
    plan = SegmentPlan([Segment(0, 2)], prefix_kv=prefix_kv)
    with (pytest.raises(RuntimeError, match="layer_idx; LlamaAttention has none"),
          use_attention(model, SEGMENTS)):
        decoder(input_ids=torch.tensor([[11, 12]]), position_ids=torch.tensor([[3, 4]]), use_cache=False,
                segment_plan=plan)


def test_a_model_that_does_not_switch_attention_is_refused(monkeypatch):
    model = gqa_model()
    # as transformers does, with a warning
    monkeypatch.setattr(model, "set_attn_implementation", lambda name: None)
    with (pytest.raises(RuntimeError, match=f"did not switch to attention '{GROUPED}'"),
          use_attention(model, GROUPED)):
        pass
