"""Rendering a document into the prompt text, with lm-eval's exact semantics.

- `doc_to_text` / `doc_to_target` / `doc_to_choice` are Jinja templates, except that a value naming a
  field of the document returns that field as it is (an int stays an int), and a rendered
  all-digits string becomes an int when the task has choices (lm-eval's rules).
- Context = description + few-shot examples (`text + target_delimiter + target + fewshot_delimiter`
  each) + the document's text. With a chat template, the description becomes the system message
  and everything else is collapsed into one user turn (lm-eval's default, not multi-turn).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined

from tunescope.core.prompt_format import chat_prompt
from tunescope.evaluate.spec import TaskSpec

_ENV = Environment(loader=BaseLoader(), undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)


def render(template: str, doc: dict[str, Any]) -> str:
    return _ENV.from_string(template).render(**doc)


def doc_to_text(spec: TaskSpec, doc: dict[str, Any]) -> str:
    tpl = spec.doc_to_text
    if callable(tpl):
        return tpl(doc)
    if isinstance(tpl, str) and tpl in doc:
        return doc[tpl]
    text = render(tpl, doc)
    if text.isdigit() and spec.doc_to_choice is not None:
        return ast.literal_eval(text)
    return text


def doc_to_target(spec: TaskSpec, doc: dict[str, Any]) -> Any:
    tpl = spec.doc_to_target
    if isinstance(tpl, int | list):
        return tpl
    if tpl in doc:
        return doc[tpl]
    text = render(tpl, doc)
    if text.isdigit() and spec.doc_to_choice is not None:
        return ast.literal_eval(text)
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError):
            return text
    return text


def doc_to_choice(spec: TaskSpec, doc: dict[str, Any]) -> list[str]:
    tpl = spec.doc_to_choice
    if isinstance(tpl, list):
        return tpl
    if isinstance(tpl, dict):
        return list(tpl.values())
    if tpl in doc:
        return doc[tpl]
    return ast.literal_eval(render(tpl, doc))


def target_text(spec: TaskSpec, doc: dict[str, Any]) -> str:
    """The gold answer as text (a choice index resolved to the choice)."""
    target = doc_to_target(spec, doc)
    if isinstance(target, int) and spec.doc_to_choice is not None:
        return doc_to_choice(spec, doc)[target]
    if isinstance(target, list):
        return str(target[0])
    return str(target)


def _description(spec: TaskSpec, doc: dict[str, Any]) -> str:
    if not spec.description:
        return ""
    return doc[spec.description] if spec.description in doc else render(spec.description, doc)


def _fewshot_block(spec: TaskSpec, examples: Sequence[dict[str, Any]]) -> str:
    return "".join(
        f"{doc_to_text(spec, ex)}{spec.target_delimiter}{target_text(spec, ex)}{spec.fewshot_delimiter}"
        for ex in examples
    )


def build_context(spec: TaskSpec, doc: dict[str, Any], examples: Sequence[dict[str, Any]],
                  tokenizer=None) -> str:
    """The full prompt for `doc` given its few-shot examples (plain text or chat-templated)."""
    description = _description(spec, doc)
    body = _fewshot_block(spec, examples) + doc_to_text(spec, doc)
    if not spec.apply_chat_template:
        return description + body
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        from tunescope.core.errors import UserError

        raise UserError(f"task '{spec.name}' needs a tokenizer with a chat template", where="task")
    messages = ([{"role": "system", "content": description}] if description else []) + [
        {"role": "user", "content": body}
    ]
    return chat_prompt(tokenizer, messages)


def continuation_delimiter(spec: TaskSpec) -> str:
    """What goes between the context and each choice: with a chat template lm-eval uses none."""
    return "" if spec.apply_chat_template else spec.target_delimiter
