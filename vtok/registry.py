"""The zoo: registry names -> (architecture, config, where pretrained weights live)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from .tokenizer import Tokenizer

ARCHITECTURES: dict[str, type[Tokenizer]] = {}


@dataclass(frozen=True)
class ModelEntry:
    """One registry name: its architecture class, config, and pretrained sources (if any)."""

    name: str
    cls: type[Tokenizer]
    config: dict[str, Any]
    hub_id: str | None = None  # a Hub repo in vtok's format (config.json + model.safetensors)
    official: str | None = None  # Hub repo of the official release this entry reproduces (converted at load)
    official_file: str = "model.safetensors"  # the weight file in that repo
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


MODELS: dict[str, ModelEntry] = {}


def register_model(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator: make an architecture loadable by the name config.json records."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def register(name: str, cls: type[Tokenizer], config: dict[str, Any], **info: Any) -> None:
    """Add a named config of an architecture to the zoo."""
    if name in MODELS:
        raise ValueError(f"model name {name!r} is already registered")
    register_model(cls)
    MODELS[name] = ModelEntry(name, cls, dict(config), **info)


def has_pretrained(name: str) -> bool:
    """True when `name` ships weights in checkpoints/ or names a Hub repo with weights."""
    from .hub import shipped_checkpoint

    entry = MODELS[name]
    return shipped_checkpoint(name) is not None or entry.hub_id is not None or entry.official is not None


def list_models(pattern: str = "*", pretrained: bool | None = None) -> list[str]:
    """Sorted registry names matching a shell-style wildcard; pretrained=True/False filters on weights."""
    names = sorted(n for n in MODELS if fnmatch.fnmatchcase(n, pattern))
    if pretrained is not None:
        names = [n for n in names if has_pretrained(n) == pretrained]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry for `name`; ValueError listing close names when unknown."""
    if name not in MODELS:
        close = [n for n in MODELS if name.split("-")[0] in n][:8]
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See vtok.list_models().")
    return MODELS[name]


def create(name: str, **overrides: Any) -> Tokenizer:
    """A fresh, untrained tokenizer from a registry name, config keys overridden by keywords."""
    entry = get_entry(name)
    return entry.cls(**{**entry.config, **overrides})
