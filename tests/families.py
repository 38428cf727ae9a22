"""Tiny random-weight models of every architecture family tunescope serves, and the conformance checks
run on each of them (tests/test_conformance.py asserts them, benchmarks/conformance.py tabulates them).

Every family is built from a transformers config with the shapes of a toy (hidden 64, 2-3 layers, 4
heads, 2 key/value heads where the family has grouped-query attention) and the tiny BPE tokenizer of
conftest.py, so nothing is downloaded. What distinguishes the families is kept: sliding windows
(small, so that prompts of ~100 tokens cross them), layers mixing sliding and full attention, logit
soft-capping, partial rotary embeddings, fused qkv / gate_up projections, biases in the output layer,
q/k norms, parallel residual blocks.

Each check compares the project's code path with a plain transformers reference computed here:

- `check_loglikelihood`: LoglikelihoodScorer.score_groups vs one unbatched forward per (context,
  continuation);
- `check_generation`: Generator (batch 1 and 8, an identical pair of prompts) vs `model.generate`, each
  prompt alone;
- `check_train_loss`: train/loss.py's supervised loss vs `model(..., labels=...).loss`;
- `check_fused_lora`: the fused LoRA training forward vs PEFT's forward, float32 and bfloat16;
- `train_one_step`: one optimizer step of the training loop for lora / dora / full;
- `check_merge`: `export_run(..., merged=True)` vs PeftModel(base, adapter);
- `check_resume`: a run stopped after its step-1 checkpoint and resumed in a fresh model vs an uninterrupted
  run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from conftest import build_tokenizer, give_adapter_an_effect
from tunescope.evaluate.generation import Generator, GenRequest, postprocess
from tunescope.evaluate.loglikelihood import ChoiceGroup, LoglikelihoodScorer
from tunescope.evaluate.tokenization import Encoder

CPU = torch.device("cpu")
WINDOW = 32  # the sliding window of the families that have one; the long prompts below are 3-4x longer
MAX_POSITIONS = 512


@dataclass(frozen=True)
class Family:
    name: str
    real_models: str  # the checkpoints (built-in aliases included) that share this architecture
    make_config: Callable[[dict], object]  # common kwargs -> transformers config
    window: int | None = None
    # Spread of the input embedding. Gemma multiplies embeddings by sqrt(hidden) = 8 and ties them to the
    # output layer: at the spread of the other matrices the embedding would swamp the residual stream
    # and the model would mostly repeat its last token, whatever the context.
    embed_std: float = 0.2
    # Parameters a text-only training step cannot reach (an image encoder), so it must not be asked to
    # move them.
    text_free: tuple[str, ...] = ()

    def config(self, tok):
        common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
        return self.make_config(common)


def _llama(c):
    from transformers import LlamaConfig

    return LlamaConfig(**c, tie_word_embeddings=True)


def _mistral(c):
    from transformers import MistralConfig

    return MistralConfig(**c, head_dim=16, sliding_window=WINDOW)


def _qwen2(c):
    from transformers import Qwen2Config

    # Qwen2 has biases on q/k/v; its released checkpoints do not use the sliding window.
    return Qwen2Config(**c, tie_word_embeddings=True)


def _qwen3(c):
    from transformers import Qwen3Config

    return Qwen3Config(**c, head_dim=16)  # q/k RMSNorm per head


def _phi(c):
    from transformers import PhiConfig

    # Rotary embedding on half of each head; LayerNorm, parallel attention/MLP, a bias on the output layer.
    return PhiConfig(**c, partial_rotary_factor=0.5)


def _phi3(c):
    from transformers import Phi3Config

    return Phi3Config(**c)  # fused qkv_proj and gate_up_proj


def _gemma2(c):
    from transformers import Gemma2Config

    # Sliding and full layers alternate; attention scores and final logits are soft-capped. The caps are
    # scaled to this toy's ranges (the real 50 / 30 would leave its logits of about +-2 untouched).
    return Gemma2Config(**c, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                        layer_types=["sliding_attention", "full_attention"], attn_logit_softcapping=5.0,
                        final_logit_softcapping=2.0)


def _gemma3(c):
    from transformers import Gemma3TextConfig

    # Mostly sliding layers with a full one (gemma-3-270m: 5 sliding per full), per-type rotary bases.
    c = {**c, "num_hidden_layers": 3}
    return Gemma3TextConfig(**c, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                            layer_types=["sliding_attention", "full_attention", "sliding_attention"])


def _gemma3_multimodal(c):
    from transformers import Gemma3Config, SiglipVisionConfig

    # The image-text Gemma 3 (4B and up) as AutoModelForCausalLM loads it: Gemma3ForConditionalGeneration
    # around the text model above, with a one-layer image encoder that text-only use never runs.
    text = _gemma3(c)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, image_size=28, patch_size=14)
    return Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                        bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"],
                        pad_token_id=c["pad_token_id"])


def _gpt_neox(c):
    from transformers import GPTNeoXConfig

    c = {k: v for k, v in c.items() if k != "num_key_value_heads"}  # no grouped-query attention
    return GPTNeoXConfig(**c)  # fused query_key_value, rotary on a quarter of each head, parallel residual


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("llama", "Llama-3.2, TinyLlama, Open-LLaMA, Falcon3, SmolLM2", _llama),
    Family("mistral", "Mistral-7B-v0.1", _mistral, WINDOW),
    Family("qwen2", "Qwen2-0.5B-Instruct", _qwen2),
    Family("qwen3", "Qwen3", _qwen3),
    Family("phi", "phi-2", _phi),
    Family("phi3", "Phi-3, Phi-3.5", _phi3),
    Family("gemma2", "Gemma 2", _gemma2, WINDOW, embed_std=0.05),
    Family("gemma3", "gemma-3-270m, gemma-3-1b (gemma3_text)", _gemma3, WINDOW, embed_std=0.05),
    Family("gemma3-multimodal", "gemma-3-4b and up, text only (gemma3)", _gemma3_multimodal, WINDOW,
           embed_std=0.05, text_free=("vision_tower", "multi_modal_projector")),
    Family("gpt_neox", "Pythia, GPT-NeoX", _gpt_neox),
]}


# The architecture behind each built-in alias (tunescope.models.registry), as in the hub checkpoints'
# config.json; gemma3-270m's GGUF loads as Gemma3ForCausalLM (gemma3_text).
ALIAS_FAMILIES = {
    "smollm2-135m-instruct": "llama",
    "gemma3-270m": "gemma3",
    "qwen2-0.5b-instruct": "qwen2",
    "falcon3-1b-instruct": "llama",
    "llama-3.2-1b": "llama",
    "tinyllama-1.1b": "llama",
    "open-llama-3b": "llama",
    "phi-2": "phi",
    "mistral-7b": "mistral",
}


@lru_cache(maxsize=1)
def tokenizer():
    return build_tokenizer()


def build_model(family: Family, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random model of `family` (drawn in float32, then cast to `dtype`), in eval mode.

    The matrices are drawn with a larger spread than transformers' init, so logits are far apart and
    a greedy choice is never decided by float rounding (which legitimately differs between batched
    and unbatched kernels)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(family.config(tokenizer()), dtype=torch.float32).eval()
    embedding = model.get_input_embeddings().weight
    # Seeded here, not before building: the values depend on the parameters' order alone, not on how
    # much randomness transformers' own initialisation draws.
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, family.embed_std if p is embedding else 0.2)
            elif name.endswith("bias"):
                # transformers starts biases at zero, where a missing bias would go unnoticed
                p.normal_(0, 0.2)
    return model.to(dtype)


# -- evaluation: log-likelihoods ------------------------------------------------------------------

QUESTION = "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:"
MC_QUESTION = ("The following are multiple choice questions (with answers) about math.\n\n"
               "How many apples does Tom have?\nA. 3\nB. 4\nC. 7\nD. 12\nAnswer:")
LONG_CONTEXT = "".join(f"She walks {i} miles each day for {i + 1} days, so {i} * {i + 1} = "
                       f"{i * (i + 1)} miles. "
                       for i in range(2, 7)) + "How many miles in all?"
SHARED_DESCRIPTION = "The following are multiple choice questions (with answers) about math.\n\n"


def choice_groups() -> list[list[ChoiceGroup]]:
    """Two calls' worth of documents. The first mixes short contexts (packed several to a row), a context
    longer than the sliding window, an empty context and single-token (MMLU-style) continuations; in the
    second every context starts with the same description line, which the engine may run once."""
    enc = Encoder(tokenizer())
    docs = [
        (QUESTION, [" 7", " 12 apples", " 3+4 = 7 apples in all."]),
        ("She walks 5 miles", [" each day for 6 days.", " and buys 4 more pens", "."]),
        (LONG_CONTEXT, [" 100 miles", " The answer is 7.", " 5 * 6 = 30"]),
        (MC_QUESTION, [" A", " B", " C", " D"]),
        ("How many", [" A", " B", " C", " D"]),
        ("", ["Tom has 3 apples.", "The answer is"]),
        (LONG_CONTEXT + "\n" + MC_QUESTION, [" A", " B", " C", " D"]),
    ]
    first = []
    for ctx, conts in docs:
        pairs = [enc.encode_pair(ctx, c) for c in conts]
        assert all(p[0] == pairs[0][0] for p in pairs)
        first.append(ChoiceGroup(pairs[0][0], [c for _, c in pairs]))
    second = []
    for ctx, conts in docs[:5]:
        pairs = [enc.encode_pair(SHARED_DESCRIPTION + ctx, c) for c in conts]
        second.append(ChoiceGroup(pairs[0][0], [c for _, c in pairs]))
    return [first, second]


@torch.no_grad()
def reference_loglikelihood(model, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """lm-eval's definition with one plain forward: the model reads (context + continuation)[:-1]."""
    ids = context + continuation[:-1]
    logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[len(context) - 1:], dim=-1)
    target = torch.tensor(continuation)
    return float(logprobs.gather(1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())


@torch.no_grad()
def greedy_continuation(model, context: list[int], n: int = 3) -> list[int]:
    """The model's own greedy next `n` tokens: a choice whose is_greedy must come out True."""
    ids = list(context)
    for _ in range(n):
        ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(context):]


@dataclass
class LoglikelihoodResult:
    max_abs_diff: float
    greedy_mismatches: list[str]  # pairs whose is_greedy differs from the reference
    pairs: int
    greedy_pairs: int  # pairs that are the model's greedy continuation (is_greedy True)
    packing: bool  # whether the scorer packs documents for this model at all
    packed_documents: int  # documents scored on the packed path
    plain_pairs: int  # pairs scored one per row (too long for the window, or no packing)
    details: list[str] = field(default_factory=list)


def check_loglikelihood(model) -> LoglikelihoodResult:
    """LoglikelihoodScorer.score_groups vs `reference_loglikelihood` on every pair of `choice_groups()`,
    each group also given the model's own greedy continuation."""
    scorer = LoglikelihoodScorer(model, batch_size=4, max_length=MAX_POSITIONS)
    counts = _count_paths(scorer)
    result = LoglikelihoodResult(0.0, [], 0, 0, scorer.packing, 0, 0)
    for call, groups in enumerate(choice_groups()):
        for g in groups:
            g.continuations.append(greedy_continuation(model, g.context))
        scored, truncated = scorer.score_groups(groups)
        assert truncated == 0
        for g, (group, scores) in enumerate(zip(groups, scored, strict=True)):
            for c, (cont, got) in enumerate(zip(group.continuations, scores, strict=True)):
                want, greedy = reference_loglikelihood(model, group.context, cont)
                diff = abs(got.loglikelihood - want)
                where = (f"call {call} group {g} choice {c} (context {len(group.context)} tokens, "
                         f"continuation {len(cont)})")
                result.pairs += 1
                result.greedy_pairs += greedy
                result.max_abs_diff = max(result.max_abs_diff, diff)
                if diff > 2e-5:
                    result.details.append(f"{where}: engine {got.loglikelihood:.7f} vs {want:.7f}")
                if got.is_greedy != greedy:
                    result.greedy_mismatches.append(f"{where}: engine is_greedy={got.is_greedy}")
    result.packed_documents, result.plain_pairs = counts["packed"], counts["plain"]
    return result


def _count_paths(scorer: LoglikelihoodScorer) -> dict[str, int]:
    """Counts what `scorer` sends down each path, by wrapping its methods on this instance only."""
    counts = {"packed": 0, "plain": 0}
    flat, plain = scorer._score_flat, scorer.score_plain

    def counting_flat(groups, *args, **kwargs):
        counts["packed"] += len(groups)
        return flat(groups, *args, **kwargs)

    def counting_plain(pairs):
        counts["plain"] += len(pairs)
        return plain(pairs)

    scorer._score_flat, scorer.score_plain = counting_flat, counting_plain
    return counts


# -- evaluation: greedy generation ----------------------------------------------------------------

STOPS = ["Question:", "\n\n"]


def generation_requests() -> list[GenRequest]:
    """Eight prompts of 80-150 tokens (several sliding windows), repetitive enough for prompt-lookup
    drafting, with different lengths and token budgets so rows finish at different steps and slots are
    refilled and compacted; the last repeats the first (one shared prefill)."""
    enc = Encoder(tokenizer())
    prompts = []
    for i in range(7):
        shots = "".join(f"Question: Tom has {i + k} apples and buys {k} more. How many apples does he have?\n"
                        f"Answer: {i + k}+{k} = {i + 2 * k}\n" for k in range(2 + i % 2))
        prompts.append(shots
                       + f"Question: Tom has {i} apples and buys 4 more. How many apples does he have?\n"
                       "Answer:" + " the" * (i % 3))
    prompts.append(prompts[0])
    return [GenRequest(enc.encode_prompt(p), STOPS, 16 + 4 * (i % 3)) for i, p in enumerate(prompts)]


@torch.no_grad()
def reference_tokens(model, request: GenRequest) -> tuple[list[int], float]:
    """`model.generate`, greedy, the prompt alone: the new tokens (EOS left out) and the smallest gap
    between the best and second-best logit along the way (how far the greedy choices are from ties)."""
    tok = tokenizer()
    ids = torch.tensor([request.prompt_ids])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=request.max_new_tokens,
                         do_sample=False, pad_token_id=tok.pad_token_id, output_logits=True,
                         return_dict_in_generate=True)
    margin = min(float(top[0, 0] - top[0, 1]) for top in (step.float().topk(2).values for step in out.logits))
    return [t for t in out.sequences[0, ids.shape[1]:].tolist() if t != tok.eos_token_id], margin


def stop_inside(text: str) -> str | None:
    """Two printable ASCII characters from the second half of `text`: a stop string this model's greedy
    answer is known to contain, so that rows also end on a stop (random weights never write "Question:")."""
    for j in range(len(text) // 2, len(text) - 1):
        piece = text[j : j + 2]
        if piece.isascii() and piece.isprintable() and piece.strip() == piece:
            return piece
    return None


@dataclass
class GenerationResult:
    equal: int
    total: int
    finish_reasons: dict[str, int] = field(default_factory=dict)
    proposed_drafts: dict[int, int] = field(default_factory=dict)  # batch size -> drafted tokens fed
    accepted_drafts: dict[int, int] = field(default_factory=dict)  # batch size -> drafted tokens kept
    greedy_margin: float = math.inf  # smallest top-1 - top-2 logit gap in the references
    mismatches: list[str] = field(default_factory=list)


def check_generation(model, batch_sizes: tuple[int, ...] = (1, 8)) -> GenerationResult:
    """Generator vs `model.generate` on `generation_requests()`; every other request also stops at a
    string taken from its own reference answer."""
    tok = tokenizer()
    requests = generation_requests()
    assert min(len(r.prompt_ids) for r in requests) > 2 * WINDOW
    result = GenerationResult(0, 0)
    full = []
    for r in requests:
        tokens, margin = reference_tokens(model, r)
        full.append(tokens)
        result.greedy_margin = min(result.greedy_margin, margin)
    for i, (req, tokens) in enumerate(zip(requests, full, strict=True)):
        if i % 2 and (stop := stop_inside(tok.decode(tokens, skip_special_tokens=True))):
            req.until = [*req.until, stop]
    references = [postprocess(tok.decode(t, skip_special_tokens=True), r.until)
                  for r, t in zip(requests, full, strict=True)]
    for bs in batch_sizes:
        engine = Generator(model, tok, batch_size=bs)
        counts = _count_steps(engine)
        outputs = engine.run(requests)
        # A decoding step yields one token per row, plus the drafted tokens the model confirmed; the first
        # token of every row comes from its prefill, and a final EOS is not part of token_ids.
        emitted = sum(len(o.token_ids) + (o.finish_reason == "eos") for o in outputs)
        result.proposed_drafts[bs] = counts["drafted"]
        result.accepted_drafts[bs] = emitted - len(outputs) - counts["rows"]
        for i, (out, text, tokens) in enumerate(zip(outputs, references, full, strict=True)):
            result.total += 1
            result.finish_reasons[out.finish_reason] = result.finish_reasons.get(out.finish_reason, 0) + 1
            # A row that stopped ends at the token completing its stop string: a prefix of generate's tokens.
            want = tokens[: len(out.token_ids)] if out.finish_reason == "stop" else tokens
            if out.text == text and out.token_ids == want:
                result.equal += 1
            else:
                result.mismatches.append(f"batch {bs} prompt {i}: engine {out.text!r} ({out.finish_reason}) "
                                         f"vs generate {text!r}")
    return result


def _count_steps(engine: Generator) -> dict[str, int]:
    """Counts the rows (summed over decoding steps) and drafted tokens `engine` feeds, by wrapping its
    decoding step on this instance only."""
    counts = {"rows": 0, "drafted": 0}
    step = engine._decode_step

    def counting(cache, running, drafts):
        counts["rows"] += len(running)
        counts["drafted"] += sum(len(d) for d in drafts)
        return step(cache, running, drafts)

    engine._decode_step = counting
    return counts


# -- training ---------------------------------------------------------------------------------------

TEMPLATE = "Instruction: {question}\nResponse: {answer}"
ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer": "3+4 = <<3+4=7>>7\n#### 7"},
    {"question": "A shop sells 12 pens for $3 each. What is the total?",
     "answer": "12*3 = <<12*3=36>>36\n#### 36"},
    # Longer than the sliding window, so training crosses it too.
    {"question": "She walks 5 miles each day for 6 days. " * 3 + "How far does she walk?",
     "answer": "5 * 6 = <<5*6=30>>30 miles, and 30 + 30 + 30 = <<30+30+30=90>>90 miles in all.\n#### 90"},
    {"question": "How many is 12 and 30?", "answer": "12+30 = <<12+30=42>>42\n#### 42"},
]


def train_examples():
    from tunescope.data.prompting import encode_dataset

    examples, _ = encode_dataset(ROWS, tokenizer(), template=TEMPLATE, use_chat_template=False,
                                 train_on_prompt=False, max_length=MAX_POSITIONS, overflow="truncate")
    return examples


def check_train_loss(model) -> float:
    """|per-token loss of train/loss.py - transformers' own loss| on one padded batch."""
    from tunescope.train.batching import collate
    from tunescope.train.loss import supervised_loss

    batch = collate(train_examples(), tokenizer().pad_token_id)
    assert batch["input_ids"].shape[1] > WINDOW and (batch["labels"] == -100).any()
    with torch.no_grad():
        ours = supervised_loss(model, batch)
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).loss
    return abs(float(ours.loss_sum) / ours.tokens - float(theirs))


@dataclass
class FusedResult:
    loss: float  # the fused model's loss
    loss_diff: float  # |fused - PEFT's forward|
    max_grad_diff: float  # over the adapters' gradients, relative to that tensor's largest gradient
    fused_layers: int
    adapter_dtype: torch.dtype


def check_fused_lora(family: Family, dtype: torch.dtype) -> FusedResult:
    """One forward and backward of the supervised loss through the project's LoRA model (fused training
    forwards) vs the same model with PEFT's own forwards, both with `family`'s base in `dtype`, no
    dropout (so both apply the same function) and an adapter with an effect."""
    from peft import LoraConfig, get_peft_model

    from tunescope.config.run_config import LoraConfig as ProjectLoraConfig
    from tunescope.train.adapters import build_trainable
    from tunescope.train.batching import collate
    from tunescope.train.loss import supervised_loss

    # scaling 20/8 = 2.5: not a power of two, so folding it into A rounds differently from PEFT (as it does
    # for most configurations), which the tolerances must absorb.
    cfg = training_config("lora", lora=ProjectLoraConfig(dropout=0.0, alpha=20))
    batch = collate(train_examples(), tokenizer().pad_token_id)
    runs = []
    for fused in (True, False):
        torch.manual_seed(0)
        base = build_model(family, dtype=dtype)
        if fused:
            model = build_trainable(base, cfg)
        else:
            model = get_peft_model(base, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=0.0,
                                                    target_modules=cfg.lora.target_modules,
                                                    task_type="CAUSAL_LM"))
        torch.manual_seed(1)
        give_adapter_an_effect(model)
        model.train()
        out = supervised_loss(model, batch)
        (out.loss_sum / out.tokens).backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
        layers = sum(1 for m in model.modules() if hasattr(m, "lora_A") and "forward" in vars(m))
        runs.append((float(out.loss_sum.detach()) / out.tokens, grads, dtypes, layers))
    (loss, grads, dtypes, layers), (ref_loss, ref_grads, ref_dtypes, _) = runs
    assert dtypes == ref_dtypes and len(dtypes) == 1 and grads.keys() == ref_grads.keys()
    grad_diff = max(float((grads[n] - ref_grads[n]).abs().max() / ref_grads[n].abs().max().clamp_min(1e-12))
                    for n in grads)
    return FusedResult(loss, abs(loss - ref_loss), grad_diff, layers, dtypes.pop())


def training_config(method: str, **overrides):
    from tunescope.config.run_config import LoraConfig, TrainingConfig

    settings = dict(method=method, lora=LoraConfig(dropout=0.1), max_steps=1, batch_size=4,
                    learning_rate=1e-2, warmup_ratio=0.0, threads=1)
    return TrainingConfig(**{**settings, **overrides})


def trainable_model(family: Family, method: str, seed: int = 0, dtype: torch.dtype = torch.float32,
                    **overrides):
    """The base model of `family` in `dtype`, wrapped for `method` by the project's own builder."""
    from tunescope.train.adapters import build_trainable

    cfg = training_config(method, **overrides)
    model = build_model(family, dtype=dtype)
    torch.manual_seed(seed)  # LoRA's A matrices are random
    return build_trainable(model, cfg), cfg


def run_training(model, cfg, **kw) -> list[dict]:
    """The training loop itself on the tiny examples; returns its metrics records."""
    from tunescope.train.loop import train

    records: list[dict] = []
    dtype = next(model.parameters()).dtype
    train(model, train_examples(), [], cfg, seed=1, pad_id=tokenizer().pad_token_id, device=CPU,
          dtype=dtype, log=records.append, **kw)
    return records


@dataclass
class StepResult:
    loss: float
    changed: int  # trainable tensors the step changed
    trainable: int  # trainable tensors
    unchanged: list[str]


def train_one_step(family: Family, method: str, dtype: torch.dtype = torch.float32) -> StepResult:
    model, cfg = trainable_model(family, method, dtype=dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    records = run_training(model, cfg)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 1
    after = dict(model.named_parameters())
    unchanged = [n for n, v in before.items() if torch.equal(v, after[n].detach())]
    return StepResult(losses[0], len(before) - len(unchanged), len(before), unchanged)


def expected_to_change(family: Family, name: str, method: str) -> bool:
    """Which trainable tensors one AdamW step must move. LoRA's B starts at zero, so at the first step
    A receives no gradient and stays; B (and DoRA's magnitude) must move. Full: every weight that the
    text reaches."""
    if any(part in name for part in family.text_free):
        return False
    if method == "full":
        return True
    return "lora_B" in name or "lora_magnitude_vector" in name


# -- export and resume ------------------------------------------------------------------------------

def save_base(family: Family, directory: Path) -> Path:
    model = build_model(family)
    model.save_pretrained(directory)
    tokenizer().save_pretrained(directory)
    return directory


@dataclass
class MergeResult:
    max_abs_diff: float  # merged export vs base + adapter, over the logits of two prompts
    logit_scale: float  # the largest |logit| of base + adapter (float32 rounding grows with it)
    adapter_effect: float  # max |base - base + adapter|: the adapter does change the model


def check_merge(family: Family, tmp: Path, method: str = "lora") -> MergeResult:
    """`export_run(run, merged=True)` on a run folder holding a non-trivial adapter, against PEFT's
    base + adapter, on a short prompt and one that crosses the sliding window."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunescope.config.loading import dump_config
    from tunescope.config.run_config import RunConfig
    from tunescope.recipes.export import export_run
    from tunescope.store.fileio import write_json, write_text_atomic
    from tunescope.train.adapters import build_trainable

    base_dir = save_base(family, tmp / "base")
    torch.manual_seed(0)
    model = build_trainable(AutoModelForCausalLM.from_pretrained(base_dir), training_config(method))
    give_adapter_an_effect(model)  # B starts at zero: give the adapter an effect to merge
    run = tmp / "run"
    model.save_pretrained(run / "adapter")
    cfg = RunConfig(name="run", model={"name": str(base_dir)}, training={"method": method})
    write_text_atomic(run / "config.yaml", dump_config(cfg))
    write_json(run / "manifest.json", {"name": "run", "status": "complete",
                                       "model": {"name": str(base_dir), "source": str(base_dir)}})
    merged_dir = export_run(run, merged=True)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                          run / "adapter").eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    enc = Encoder(tokenizer())
    result = MergeResult(0.0, 0.0, 0.0)
    for text in (QUESTION, LONG_CONTEXT + " " + QUESTION):
        ids = torch.tensor([enc.encode_prompt(text)])
        with torch.no_grad():
            want = reference(input_ids=ids).logits
            result.max_abs_diff = max(result.max_abs_diff,
                                      float((merged(input_ids=ids).logits - want).abs().max()))
            result.logit_scale = max(result.logit_scale, float(want.abs().max()))
            result.adapter_effect = max(result.adapter_effect,
                                        float((base(input_ids=ids).logits - want).abs().max()))
    return result


class _Stop(Exception):
    """Raised from on_step to stop a run right after a checkpoint, as a kill would."""


def check_resume(family: Family, tmp: Path) -> tuple[float, float]:
    """(|step-2 loss resumed - uninterrupted|, max |final trainable weights resumed - uninterrupted|).

    A run of two steps checkpoints after step 1 and is stopped there; a fresh model (with other LoRA
    initial values, so only the checkpoint can make it agree) resumes from that checkpoint."""
    from tunescope.train.checkpoint import Checkpointer

    overrides = dict(max_steps=2, checkpoint_every=1, batch_size=2)

    def step_losses(records):
        return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}

    straight, cfg = trainable_model(family, "lora", **overrides)
    want = step_losses(run_training(straight, cfg, checkpointer=Checkpointer(tmp / "straight")))

    stopped, cfg = trainable_model(family, "lora", **overrides)
    checkpointer = Checkpointer(tmp / "stopped")

    def stop_after_first(state, total):
        if state.step == 1:
            raise _Stop

    try:
        run_training(stopped, cfg, checkpointer=checkpointer, on_step=stop_after_first)
    except _Stop:
        pass
    assert checkpointer.latest() is not None and checkpointer.latest().name.endswith("00000001")

    resumed, cfg = trainable_model(family, "lora", seed=123, **overrides)
    got = step_losses(run_training(resumed, cfg, checkpointer=checkpointer, resume=True))
    assert set(got) == {2} and set(want) == {1, 2}
    final = dict(straight.named_parameters())
    weight_diff = max(float((p.detach() - final[n].detach()).abs().max())
                      for n, p in resumed.named_parameters() if p.requires_grad)
    return abs(got[2] - want[2]), weight_diff


@dataclass
class FoldResult:
    layers_folded: int
    max_abs_diff: float  # folded forward vs PEFT's unmerged forward, inside the fold
    logit_scale: float
    adapter_effect: float  # how far the adapter moves the logits at all
    restored_exactly: bool  # every parameter bit for bit as before, and the same logits after the fold


def check_folding(family: Family, method: str) -> FoldResult:
    """An adapted model with a non-trivial adapter, evaluated with its adapters folded into the weights
    (`evaluate.folding`) against PEFT's own unmerged forward, on a prompt crossing the sliding window."""
    from tunescope.evaluate.folding import folded_adapters

    model, _ = trainable_model(family, method)
    give_adapter_an_effect(model)
    model.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.tensor([Encoder(tokenizer()).encode_prompt(LONG_CONTEXT + " " + QUESTION)])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
        with folded_adapters(model) as n_folded:
            got = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    restored = torch.equal(after, want) and all(torch.equal(p, before[n])
                                                for n, p in model.named_parameters())
    return FoldResult(n_folded, float((got - want).abs().max()), float(want.abs().max()),
                      float((base - want).abs().max()), restored)
