"""mkdocs hook: the configuration reference, rendered at build time from the config schema.

A page holding :data:`MARKER` gets it replaced by tables made from
:func:`cachekit.config.config_schema`, so the reference lists exactly the fields, types,
defaults and bounds the code validates, policy kinds of loaded plugins included.
"""

from __future__ import annotations

import json
from typing import Any

from cachekit.config import CacheConfig, config_schema

MARKER = "<!-- cachekit:config-reference -->"

_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_BOUNDS = {
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "minLength": "length ≥ {}",
    "maxLength": "length ≤ {}",
    "minItems": "at least {} items",
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: put the rendered reference where a page holds the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(config_schema()))


def render(schema: dict[str, Any]) -> str:
    """Markdown for a schema: the root model, the other models it uses, then each policy kind."""
    defs = schema.get("$defs", {})
    root_defaults = CacheConfig().model_dump(mode="json")
    models = {name: model for name, model in defs.items() if _kind(model) is None}
    policies = sorted((_kind(model), model) for model in defs.values() if _kind(model) is not None)
    parts = [_section(f"## `{schema['title']}` {{#{_anchor(schema['title'])}}}", schema, defs, root_defaults)]
    parts += [_section(f"## `{name}` {{#{_anchor(name)}}}", model, defs) for name, model in models.items()]
    parts.append("## Policy kinds {#policy-kinds}\n\nThe `kind` key picks one of these; the other keys are its fields.")
    parts += [_section(f"### `{kind}` {{#policy-{kind}}}", model, defs) for kind, model in policies]
    return "\n\n".join(parts) + "\n"


def _kind(model: dict[str, Any]) -> str | None:
    return model.get("properties", {}).get("kind", {}).get("const")


def _anchor(name: str) -> str:
    return name.lower()


def _section(heading: str, model: dict[str, Any], defs: dict[str, Any], defaults: dict[str, Any] | None = None) -> str:
    rows = ["| Field | Type | Default | Bounds | Description |", "| --- | --- | --- | --- | --- |"]
    required = set(model.get("required", ()))
    for name, prop in model.get("properties", {}).items():
        if "default" in prop:
            default = _code(prop["default"])
        elif name in required:
            default = "required"
        else:
            default = _code((defaults or {}).get(name))
        description = prop.get("description") or (
            f"Selects this kind: `{name}: {prop['const']}`." if "const" in prop else ""
        )
        cells = [f"`{name}`", _type(prop, defs), default, ", ".join(_bounds(prop)), description]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    description = model.get("description", "")
    return "\n\n".join(part for part in (heading, description, "\n".join(rows)) if part)


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        kind = _kind(defs.get(name, {}))
        return f"[`{kind}`](#policy-{kind})" if kind else f"[`{name}`](#{_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " or ".join(_type(option, defs) for option in prop[key])
    if "const" in prop:
        return _code(prop["const"])
    if "enum" in prop:
        return " or ".join(_code(value) for value in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object":
        return f"mapping of `str` to {_type(prop.get('additionalProperties', {}), defs)}"
    return f"`{_TYPES.get(kind, kind or 'any')}`"


def _bounds(prop: dict[str, Any]) -> list[str]:
    found = [text.format(prop[key]) for key, text in _BOUNDS.items() if key in prop]
    for option in prop.get("anyOf", ()):
        found += _bounds(option)
    return found
