"""The defaults of every parameter, read from the params schema shipped in this package.

The schema (bloodcell/common/params.schema.yaml; workflow/schemas/params.schema.yaml links to it)
gives each key's ``default``, equal to the default preset's value in params.yaml (a test checks
they agree). Command-line options that mirror a parameter take their default from here, so no
default is written twice. Library code never reads params.yaml itself.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

SCHEMA_NAME = "params.schema.yaml"


@cache
def schema() -> dict:
    """The params JSON schema (parsed YAML) shipped with the package."""
    text = (resources.files("bloodcell.common") / SCHEMA_NAME).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _resolve(node: dict) -> dict:
    """Follow a local ``$ref`` (#/$defs/NAME) until a node without one, merging the referring
    node's own keywords over the referenced ones (a property may override a $defs default)."""
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/$defs/")
        node = {**schema()["$defs"][ref], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def key_schema(key: str) -> dict:
    """The schema node of a dotted params key (``train_detector.batch``); KeyError if the
    schema has no such key."""
    node = _resolve(schema())
    for part in key.split("."):
        props = node.get("properties", {})
        if part in props:
            node = _resolve(props[part])
        elif isinstance(node.get("additionalProperties"), dict):
            node = _resolve(node["additionalProperties"])
        else:
            raise KeyError(f"params schema has no key {key!r}")
    return node


def param_default(key: str):
    """The schema's default of a dotted params key; KeyError if it has none."""
    node = key_schema(key)
    if "default" not in node:
        raise KeyError(f"params schema gives {key!r} no default")
    return node["default"]
