"""YAML with bounded alias expansion, for every YAML file a user hands in (run configs, grid files).

A YAML alias (`*a`) repeats the node its anchor (`&a`) names; nested aliases multiply, so a few hundred
bytes can stand for billions of values ("billion laughs"). PyYAML shares the repeated objects, but
validation, dumping and error messages walk them expanded, which is where memory and output explode.
The loader here counts the values each document stands for, expanded, on the composed node graph,
before any Python object is built, and refuses a document past `MAX_EXPANDED_NODES` with one line
naming the file. A config or grid file is a few hundred values; the limit leaves it ample room.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tunescope.core.errors import UserError

MAX_EXPANDED_NODES = 20_000


class AliasBomb(yaml.YAMLError):
    """A document whose aliases expand past the limit, or refer to themselves."""


def _expanded_size(node: Node, memo: dict[int, int], visiting: set[int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    if key in visiting:
        raise AliasBomb("an alias refers to the node that contains it (a recursive structure)")
    visiting.add(key)
    size = 1
    if isinstance(node, SequenceNode):
        children = node.value
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, memo, visiting)
        if size > MAX_EXPANDED_NODES:
            raise AliasBomb(f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values; write the "
                            "values out (or use fewer nested aliases)")
    visiting.discard(key)
    memo[key] = size
    return size


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that measures each composed document before constructing it."""

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def load_yaml(text: str, where: str) -> Any:
    """Parse `text` (the content of `where`, a file name for messages); bad YAML is a `UserError` at
    file:line."""
    try:
        return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except AliasBomb as e:
        raise UserError(f"not accepted as YAML: {e}", where=where) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise UserError(f"not valid YAML ({getattr(e, 'problem', None) or e})",
                        where=f"{where}:{mark.line + 1}" if mark else where) from None
