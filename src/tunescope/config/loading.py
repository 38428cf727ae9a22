"""Reading a `RunConfig`: YAML with `--set a.b=c` overrides, or command-line options as config keys.

Overrides are applied to the raw mapping before validation, so they are checked exactly like keys
in the file. A problem is one `UserError` naming its place: file:line of the key in the YAML, the
`--set` override that set it, or the command-line option.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunescope.config.run_config import RunConfig, field_annotation
from tunescope.config.safe_yaml import AliasBomb, BoundedSafeLoader, load_yaml
from tunescope.core.errors import UserError


def _format_validation_error(err: ValidationError, source: str, lines: dict[tuple, int],
                             overridden: list[tuple]) -> UserError:
    """One line: each problem with its place, the first place as the error's `where`: `--set` for a
    key that an override set, else file:line of the key in the YAML (or the file)."""
    problems = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc)
        if not key:  # a check across sections names its keys itself, and is placed by the key it names
            text = e["msg"].removeprefix("Value error, ")
            named = re.search(r"key '([\w.]+)'", text)
            loc = tuple(named.group(1).split(".")) if named else loc
        elif e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"][:-1])
            text = f"unknown key '{key}' (allowed: {', '.join(allowed)})"
        else:
            text = f"key '{key}': {e['msg']}"
        problems.append((_place(loc, source, lines, overridden), text))
    where = problems[0][0]
    parts = [problems[0][1]] + [f"{text} ({place})" if place != where else text
                                for place, text in problems[1:]]
    return UserError("invalid config: " + "; ".join(parts), where=where)


def _place(loc: tuple, source: str, lines: dict[tuple, int], overridden: list[tuple]) -> str:
    if not loc:
        return source
    for key in overridden:
        n = min(len(key), len(loc))
        if key[:n] == loc[:n]:
            return f"--set {'.'.join(key)}"
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return f"{source}:{lines[loc[:n]]}"
    return source


def _key_lines(text: str) -> dict[tuple, int]:
    """(key path) -> 1-based line of the key in the YAML text, for mapping keys at any depth."""
    out: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    out[(*path, k.value)] = k.start_mark.line + 1
                    walk(v, (*path, k.value))

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return out


def from_options(section: type[BaseModel], **values: Any) -> Any:
    """A config section from command-line options, validated like the same keys in a config file;
    an invalid value is a UserError naming the option (`--batch-size`)."""
    try:
        return section.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        option = "--" + str(e["loc"][0]).replace("_", "-")
        if e["type"] == "greater_than_equal":
            raise UserError(f"must be at least {e['ctx']['ge']}", where=option) from None
        raise UserError(e["msg"].removeprefix("Value error, "), where=option) from None


def _allowed_keys(parent: tuple) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in parent:
        field = model.model_fields.get(str(part))
        if (field is None or not isinstance(field.annotation, type)
                or not issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`training.epochs=1` -> (['training', 'epochs'], 1). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise UserError(f"override '{item}' must look like key.path=value", where="--set")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise UserError(f"override '{item}' has an empty key", where="--set")
    try:
        value = yaml.load(raw, Loader=BoundedSafeLoader) if raw.strip() else None  # noqa: S506
    except AliasBomb as e:
        raise UserError(f"not accepted: {e}", where=f"--set {key.strip()}") from None
    except yaml.YAMLError:
        value = raw
    if value is not None and not isinstance(value, str | list | dict) and _is_text_field(parts):
        value = raw.strip()  # `--set name=123` names a run "123": a text key keeps the text as typed
    return parts, value


def _is_text_field(parts: list[str]) -> bool:
    """Whether the key holds text (str or str | None) in RunConfig."""
    import types
    import typing

    ann = field_annotation(parts)
    if ann is str:
        return True
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return set(typing.get_args(ann)) == {str, type(None)}
    return False


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        parts, value = parse_override(item)
        node = raw
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise UserError(f"'{p}' is not a section, cannot set '{item}'", where="--set")
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML (or start from the defaults), apply `--set` overrides, validate."""
    raw: dict = {}
    source = "config"
    lines: dict[tuple, int] = {}
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise UserError("config file not found" if not p.is_dir() else "is a folder, not a config file",
                            where=str(p))
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            line = p.read_bytes()[: e.start].count(b"\n") + 1
            raise UserError("not a UTF-8 text file (a config is YAML text)", where=f"{p}:{line}") from None
        except OSError as e:
            raise UserError(f"cannot read the config ({e.strerror or e})", where=str(p)) from None
        loaded = load_yaml(text, str(p))
        if loaded is None:
            # An empty file is more likely a mistake than a request for the full default run.
            raise UserError("the config file is empty (write at least `name: ...`; see configs/ for "
                            "examples)", where=str(p))
        if not isinstance(loaded, dict):
            raise UserError("the config must be a mapping of keys to values", where=str(p))
        raw.update(loaded)
        lines = _key_lines(text)
    overridden = [tuple(parse_override(o)[0]) for o in overrides or []]
    raw = apply_overrides(raw, overrides or [])
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _format_validation_error(e, source, lines, overridden) from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def only_report_keys(overrides: list[str], when: str) -> None:
    """Refuse overrides of anything but report.* settings (re-reporting a finished run, comparing runs)."""
    bad = [o for o in overrides if not o.strip().startswith("report.")]
    if bad:
        raise UserError(f"only report.* settings can change {when}, not '{bad[0]}' "
                        "(the other keys describe how the run was made)", where="--set")
