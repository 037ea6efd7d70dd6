"""Routing-table dataclasses <-> plain values (dicts, lists, str, int, float, bool, None) for YAML.

Generic over the dataclass fields and their type hints, so a field added to
:mod:`routing.tables.model` (codecs, SRTP, spend caps...) is exported and accepted by
``edgectl export``/``apply`` without an edit here.  Supported field types:
``str``, ``int``, ``float``, ``bool``, ``Decimal`` (written as a string, never
a float), ``Enum`` subclasses (by value), ``X | None``, ``tuple[X, ...]``,
``list[X]``, ``dict[str, X]`` and nested dataclasses (``Gateway``,
``NumberFormat``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import lru_cache
from typing import Any

from routing.tables.model import DataError

__all__ = ["to_plain", "from_plain"]


def to_plain(value: Any) -> Any:
    """A dataclass instance (or any value of a supported field type) as plain YAML-able values.

    Dataclasses become dicts in field order; tuples become lists; enums their
    value; Decimals their string form.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")


def _convert(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None:
            if type(None) in options:
                return None
            raise DataError(f"{where}: must not be empty")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except DataError as exc:
                errors.append(str(exc))
        raise DataError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if value is None:
        raise DataError(f"{where}: must not be empty")
    if origin in (tuple, list):
        args = typing.get_args(kind)
        item = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            raise DataError(f"{where}: expected a list, got {value!r}")
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, item = typing.get_args(kind) or (str, Any)
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return from_plain(kind, value, where)
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in kind)
            raise DataError(f"{where}: must be one of {allowed}, got {value!r}") from None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise DataError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise DataError(f"{where}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise DataError(f"{where}: expected a number, got {value!r}")
    if kind is Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise DataError(f"{where}: expected a decimal (e.g. '0.0045'), got {value!r}")
        # a YAML float goes through its shortest repr (0.0045 -> "0.0045"), never through binary
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise DataError(f"{where}: expected a decimal, got {value!r}") from None
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # YAML reads 44 as an int; country codes and prefixes are digit strings
        raise DataError(f"{where}: expected a string, got {value!r}")
    raise DataError(f"{where}: unsupported field type {_describe(kind)}")


def from_plain(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping of plain values, checking every field's type.

    Fields missing from ``data`` take the dataclass default; the constructor's
    own checks (``NumberFormat.__post_init__``) still run.

    Raises:
        DataError: ``data`` is not a mapping, has an unknown field, misses a field
            without a default, or a value has the wrong type; the message starts
            with ``where`` and names the field.
    """
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise DataError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise DataError(f"{where}.{f.name}: required")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: {exc}") from None
