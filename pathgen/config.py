"""Typed configs: dataclass defaults in code, YAML on top, ``a.b=c`` overrides last.

The same three layers for every stage (as dinov2 does with OmegaConf, without the dependency):
``load_config(TilingConfig, "configs/tile/default.yaml", ["tissue.min_region_mm2=0.05"])``.
Unknown keys are errors that name the key, so a typo never silently falls back to a default.
Every run writes the resolved config beside its outputs with `save_config`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pathgen.atomic import write_text_atomic

T = TypeVar("T")


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-4`` and ``5E3`` are numbers, as in YAML 1.2,
    JSON and Python (PyYAML follows YAML 1.1, which needs a dot in the mantissa, and reads them as
    strings)."""


_YAML12_FLOAT = re.compile(
    r"""^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$
    |^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$""",
    re.X,
)
Yaml12Loader.yaml_implicit_resolvers = {
    key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))
# the int resolver is registered first for these first characters, so integers stay ints


def yaml_load(text: str) -> Any:
    """Parse YAML text safely (no object construction), numbers as YAML 1.2 reads them."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 -- a SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override that does not fit the typed config; names the key."""


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into its dotted key and its YAML-parsed value."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    if raw == "":
        return key, None
    if _is_plain_text(raw):
        return key, raw
    try:
        return key, yaml_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(
            f"override {text!r}: the value is not valid YAML ({problem}; quote strings, close brackets)"
        ) from None


def _is_plain_text(raw: str) -> bool:
    """True for an unquoted value YAML would cut or reshape although it is plainly text, as paths often
    are: `out=/data/run #3` (YAML drops ` #3` as a comment) or `out=/data/a: b` (YAML reads a mapping)."""
    if raw[0] in "'\"[{":
        return False
    if " #" in raw or raw.startswith("#"):
        return True
    try:
        return isinstance(yaml_load(raw), dict)
    except yaml.YAMLError:
        return ": " in raw or raw.endswith(":")


def check(ok: bool, key: str, problem: str) -> None:
    """Raise ConfigError `key: problem` unless `ok`: the range and name checks a config runs in
    ``__post_init__``, so a bad value stops the command before any work, naming the key."""
    if not ok:
        raise ConfigError(f"{key}: {problem}")


def one_of(value: Any, choices: tuple, key: str) -> None:
    """ConfigError naming `key` unless `value` is one of `choices`."""
    check(value in choices, key, f"{value!r} is not one of {', '.join(map(str, choices))}")


def is_override(text: str) -> bool:
    """True for command-line words of the form ``key.sub=value``."""
    key, sep, _ = text.partition("=")
    return bool(sep) and bool(key) and all(part.isidentifier() for part in key.split("."))


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[leaf] = value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a type hint, converting only where it is lossless (int → float)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for option in typing.get_args(hint):
            if option is not type(None):
                try:
                    return _coerce(value, option, key)
                except ConfigError:
                    continue
        raise ConfigError(f"{key}: {value!r} does not fit {hint}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section, got {value!r}")
        return _build(hint, value, key + ".")
    if origin is list and isinstance(value, str):
        value = [value]  # `data=OUT/` on the command line means a one-item list
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        return origin(_coerce(item, item_hint, key) for item in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _build(cls: type[T], values: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    defaults = cls()
    kwargs = {}
    for name in names:
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], prefix + name)
        elif dataclasses.is_dataclass(hints[name]):
            kwargs[name] = getattr(defaults, name)
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a __post_init__ check names the field; add the section path
        raise ConfigError(f"{prefix}{err}") from None


def from_dict(cls: type[T], values: dict, prefix: str = "") -> T:
    """Build config `cls` from a (possibly partial) nested dict, defaults filling the rest;
    `prefix` (``"method_options."``) is put before key names in errors."""
    return _build(cls, values, prefix)


def to_dict(config: Any) -> dict:
    """The config as plain nested dicts, ready for YAML or JSON."""
    return dataclasses.asdict(config)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, then the YAML file at `path`, then dotted overrides."""
    values: dict = {}
    if path is not None:
        try:
            values = yaml_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    for text in overrides or []:
        _set_dotted(values, *parse_override(text))
    return resolve_paths(from_dict(cls, values))


def resolve_paths(config: T) -> T:
    """`config` with the fields its class lists in ``PATH_KEYS`` (dotted) made absolute against the
    working directory, so a saved config (and `--resume` from it) means the same files from any
    directory. Empty values and ``random:``-style names stay as they are."""
    for dotted in getattr(type(config), "PATH_KEYS", ()):
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, _absolute(getattr(node, leaf)))
    return config


def _absolute(value: Any) -> Any:
    if isinstance(value, list):
        return [_absolute(item) for item in value]
    if not isinstance(value, str) or not value or ":" in value.split(os.sep)[0]:
        return value
    return str(Path(value).expanduser().resolve())


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (the record of what a run actually used)."""
    write_text_atomic(path, yaml.safe_dump(to_dict(config), sort_keys=False))
