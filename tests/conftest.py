"""Shared fixtures: a tiny tokenizer and a tiny random Llama saved as a local model directory.

They are built inside the tests so the suite needs no network and no downloaded weights.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests must never write to the user's run registry (~/.cache/tunescope/registry.sqlite).
os.environ["TUNESCOPE_REGISTRY"] = str(Path(tempfile.mkdtemp(prefix="tunescope-test-registry-"))
                                       / "registry.sqlite")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CORPUS = [
    "Instruction: Tom has 3 apples and buys 4 more. How many apples does he have?\nResponse: 3+4 = "
    "<<3+4=7>>7\n#### 7",
    "Question: A shop sells 12 pens for $3 each. What is the total?\nAnswer: 12*3 = <<12*3=36>>36\n#### 36",
    "The following are multiple choice questions (with answers) about math. A. B. C. D. Answer:",
    "She walks 5 miles each day for 6 days, so 5 * 6 = 30 miles in all.",
    "0123456789 + - * / = $ , . # < > ( ) ? ! : ; ' \" % and the a of to is in on it for how many much what",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")


def build_tiny_llama(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def give_adapter_an_effect(model, std: float = 0.05):
    """LoRA's B matrices start at zero, so a fresh adapter changes nothing: draw them from N(0, std²)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED}")
    return SHARED


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: a second thread mostly waits for the first."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
