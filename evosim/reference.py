"""The scenario reference, generated from the scenario's pydantic models.

Every field of every section: its type, allowed values and bounds, default and
description. Three renderings of the same source:

- :func:`markdown` is ``docs/scenario-reference.md`` (regenerate it with
  ``evosim fields --markdown > docs/scenario-reference.md``; a test checks it is current);
- :func:`text` is what ``evosim fields [SECTION]`` prints;
- :func:`json_schema` is what ``evosim schema`` prints, for YAML editors to complete and
  check scenarios (e.g. with a ``# yaml-language-server: $schema=...`` line).
"""

from __future__ import annotations

import json
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from evosim.errors import ScenarioError
from evosim.scenario import Scenario

__all__ = ["FieldDoc", "fields", "json_schema", "markdown", "section_names", "text"]


@dataclass(frozen=True)
class FieldDoc:
    """One field of the reference: ``section.name``, type, default, description."""

    section: str
    name: str
    type: str
    allowed: str
    bounds: str
    default: str
    description: str


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _sections(model: type[BaseModel] = Scenario, prefix: str = "") -> list[tuple[str, Any]]:
    out = [(prefix, model)]
    for name, info in model.model_fields.items():
        if _is_model(info.annotation):
            out += _sections(info.annotation, f"{prefix}.{name}" if prefix else name)
    return out


def section_names() -> list[str]:
    """``""`` (the top level), ``"tree"``, ..., ``"traits.population"``, ..."""
    return [name for name, _ in _sections()]


def _type_name(tp: Any) -> tuple[str, list[str]]:
    """(type description, allowed literal values)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of", [str(a) for a in args]
    if origin in (typing.Union, types.UnionType):
        names, allowed = [], []
        for a in args:
            if a is type(None):
                names.append("null")
            elif typing.get_origin(a) is Literal:
                allowed += [str(v) for v in typing.get_args(a)]
            else:
                names.append(_type_name(a)[0])
        if allowed:
            names.append(" or ".join(repr(v) for v in allowed))
        return " or ".join(names), []
    if origin in (list, tuple):
        inner = _type_name(args[0])[0] if args else "any"
        return f"list of {inner}", []
    if origin is dict:
        return "mapping", []
    if _is_model(tp):
        return "section", []
    return getattr(tp, "__name__", str(tp)), []


_OPS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _number(value: float) -> str:
    if isinstance(value, int):
        if value >= 2**32 and value & (value - 1) == 0:
            return f"2^{value.bit_length() - 1}"
        return f"{value:,}"
    return f"{value:g}"


def _bounds(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for key, op in _OPS.items():
            value = getattr(meta, key, None)
            if value is not None:
                parts.append(f"{op} {_number(value)}")
    return ", ".join(parts)


def _default(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "x-default" in extra:
        return str(extra["x-default"])
    if info.default_factory is not None:
        if _is_model(info.annotation):
            return "(section)"
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return "(section)"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def fields(section: str | None = None) -> list[FieldDoc]:
    """The reference rows, of one section (``"tree"``, ``"traits.population"``) or all.

    Raises
    ------
    ScenarioError
        ``section`` is not a section of a scenario.
    """
    all_sections = _sections()
    if section is not None:
        chosen = [(n, m) for n, m in all_sections if n == section]
        if not chosen:
            from evosim.scenario import _did_you_mean

            names = [n for n, _ in all_sections if n]
            raise ScenarioError(
                f"no scenario section {section!r}{_did_you_mean(section, names)}"
                f" (sections: {', '.join(names)})"
            )
        all_sections = chosen
    rows = []
    for name, model in all_sections:
        for field_name, info in model.model_fields.items():
            if _is_model(info.annotation):
                continue
            type_name, allowed = _type_name(info.annotation)
            rows.append(
                FieldDoc(
                    section=name,
                    name=field_name,
                    type=type_name,
                    allowed=", ".join(allowed),
                    bounds=_bounds(info),
                    default=_default(info),
                    description=info.description or "",
                )
            )
    return rows


def _section_title(name: str) -> str:
    if not name:
        return "Top level"
    return f"`{name}`"


def _section_doc(model: Any) -> str:
    return (model.__doc__ or "").strip().splitlines()[0].replace("``", "`")


def markdown() -> str:
    """The reference as Markdown (the content of ``docs/scenario-reference.md``)."""
    lines = [
        "# Scenario reference",
        "",
        "<!-- Generated from evosim/scenario.py by "
        "`evosim fields --markdown > docs/scenario-reference.md`; do not edit by hand. -->",
        "",
        "A scenario is YAML with one section per stage of the pipeline. Every field has a "
        "default, so a scenario can be as short as `tree: {n_species: 16}`; unknown fields "
        "are errors. `evosim validate SCENARIO` checks a file, `evosim fields [SECTION]` "
        "prints this reference in the terminal and `evosim schema` prints it as a JSON "
        "Schema for editors.",
        "",
    ]
    rows = fields()
    for name, model in _sections():
        mine = [r for r in rows if r.section == name]
        if not mine:
            continue
        lines += [f"## {_section_title(name)}", "", _section_doc(model), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for r in mine:
            kind = r.type
            if r.allowed:
                kind = " \\| ".join(f"`{v}`" for v in r.allowed.split(", "))
            if r.bounds:
                kind += f" ({r.bounds})"
            desc = r.description.replace("|", "\\|")
            lines.append(f"| `{r.name}` | {kind} | `{r.default}` | {desc} |")
        lines.append("")
    return "\n".join(lines)


def text(section: str | None = None, *, width: int = 88) -> str:
    """The reference for a terminal: one block per field, grouped by section."""
    rows = fields(section)
    out: list[str] = []
    current = None
    models = dict(_sections())
    for r in rows:
        if r.section != current:
            current = r.section
            title = r.section or "(top level)"
            out += ["" if out else None, f"{title}: {_section_doc(models[r.section])}"]
            out = [line for line in out if line is not None]
        kind = f"one of {r.allowed.replace(', ', ' | ')}" if r.allowed else r.type
        if r.bounds:
            kind += f", {r.bounds}"
        out.append(f"  {r.name}: {kind} (default {r.default})")
        if r.description:
            out += textwrap.wrap(
                r.description, width=width, initial_indent="      ", subsequent_indent="      "
            )
    return "\n".join(out)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (draft 2020-12, as pydantic writes it)."""
    schema = Scenario.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "evosim scenario",
        **{k: v for k, v in schema.items() if k != "title"},
    }
