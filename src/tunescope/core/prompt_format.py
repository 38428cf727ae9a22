"""How a question (and its answer) becomes model text, shared by training and evaluation.

Training formats each example with the run's prompt template or the tokenizer's chat template; the
held-out evaluation must give the model exactly the prompt part of that text, so both go through the
functions here. `Encoded` is a tokenised training example; positions labelled `IGNORE_INDEX` carry
no loss.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def prompt_prefix(template: str) -> str:
    """The part of the template before the answer, without trailing whitespace: what a model is
    given at evaluation time (`Instruction: {question}\\nResponse: {answer}` ->
    `Instruction: {question}\\nResponse:`)."""
    return template.split("{answer}")[0].rstrip()


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """Chat-format `messages` with the generation prompt; retry without the system turn if the
    template rejects one (lm-eval does the same)."""
    import jinja2

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except jinja2.exceptions.TemplateError:
        messages = [m for m in messages if m["role"] != "system"]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_example(tokenizer, question: str, answer: str) -> tuple[str, str]:
    """(prompt, full text) of a question/answer pair in the tokenizer's chat template; the prompt is
    what `chat_prompt` gives for the question alone, and the full text starts with it."""
    user = [{"role": "user", "content": question}]
    prompt = chat_prompt(tokenizer, user)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        # Some templates render the assistant turn differently from the generation prompt.
        full = prompt + answer + (tokenizer.eos_token or "")
    # Templates end the turn with EOS plus a newline; the sequence should end at the EOS.
    return prompt, full.rstrip()
