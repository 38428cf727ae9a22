"""Prompt formatting, tokenisation and label masking.

The prompt part of each example gets label -100 (no loss) unless `train_on_prompt` is set; the
response and the EOS token that ends it are supervised, so the tuned model learns to stop.
Which tokens are "response" is decided by character offsets, not by tokenising the prompt alone:
the tokenizer may merge the space before the answer into the answer's first token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunescope.core.prompt_format import IGNORE_INDEX, Encoded, chat_example, prompt_prefix


@dataclass
class EncodeStats:
    total: int = 0
    truncated: int = 0
    dropped: int = 0
    dropped_rows: list[int] = field(default_factory=list)


def format_example(question: str, answer: str, template: str, tokenizer=None,
                   use_chat_template: bool = False) -> tuple[str, str]:
    """Return (prompt_text, full_text); full_text starts with prompt_text."""
    if use_chat_template:
        return chat_example(tokenizer, question, answer)
    prompt = prompt_prefix(template).format(question=question)
    full = template.format(question=question, answer=answer)
    return prompt, full


def encode_example(
    question: str,
    answer: str,
    tokenizer,
    *,
    template: str,
    use_chat_template: bool = False,
    train_on_prompt: bool = False,
) -> Encoded:
    prompt, full = format_example(question, answer, template, tokenizer, use_chat_template)
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=not use_chat_template)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    boundary = len(prompt)
    labels = []
    for tok_id, (start, end) in zip(ids, offsets, strict=True):
        # Special tokens have (0, 0) offsets; a BOS at position 0 belongs to the prompt.
        is_response = end > boundary and end > start
        labels.append(tok_id if (is_response or train_on_prompt) else IGNORE_INDEX)
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
        labels.append(eos)
    elif ids and ids[-1] == eos:
        labels[-1] = eos
    return Encoded(ids, labels)


def encode_dataset(
    rows: list[dict],
    tokenizer,
    *,
    template: str,
    use_chat_template: bool,
    train_on_prompt: bool,
    max_length: int,
    overflow: str,
) -> tuple[list[Encoded], EncodeStats]:
    """Encode rows; sequences over max_length are truncated (keeping the start) or dropped, and counted."""
    stats = EncodeStats(total=len(rows))
    out = []
    for i, row in enumerate(rows):
        ex = encode_example(row["question"], row["answer"], tokenizer, template=template,
                            use_chat_template=use_chat_template, train_on_prompt=train_on_prompt)
        if len(ex.input_ids) > max_length:
            if overflow == "drop":
                stats.dropped += 1
                stats.dropped_rows.append(i)
                continue
            ex = Encoded(ex.input_ids[:max_length], ex.labels[:max_length])
            stats.truncated += 1
            if all(label == IGNORE_INDEX for label in ex.labels[1:]):
                # Nothing left to learn from once the response is cut away.
                stats.dropped += 1
                stats.dropped_rows.append(i)
                continue
        out.append(ex)
    return out, stats
