"""Type checks for configs rebuilt from JSON (a manifest's ``feature_config`` and ``site_recipe``).

The config dataclasses check ranges, not types: ``FeatureConfig(n_bits=12.0)`` passes ``10 <= n_bits
<= 26`` and then fails as ``1 << 12.0`` wherever the column count is needed; ``TokenConfig(char_ngram=
2.5)`` loads and then fails on every message scored; ``TrainConfig(cv_folds=2.5)`` fails inside the
fit. Review of the day-0 recipe commits: a manifest edited to hold such a value (``"n_bits": 12.0``
is what a JSON tool that writes every number as a float leaves) made ``spamgate models add`` and
``spamgate retrain`` end in a ``TypeError`` traceback, and a server would load the model and then
fail every message. Checked once where the dict is read, the error names the field instead.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

_SCALARS: tuple[type, ...] = (bool, int, float, str, type(None))


def _accepts(kind: Any, value: Any) -> bool | None:
    """Whether ``value`` is of the declared ``kind``; None for kinds this does not check."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    if kind is type(None):
        return value is None
    return None


def check_field_types(cls: type, data: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ``TypeError`` naming the field (after ``prefix``) when a value in ``data`` is not of
    the type ``cls`` declares (bool, int, float, str, or a union of them; a float must be finite).

    Keys ``cls`` does not have and fields of other types (nested configs) are left to the caller:
    the constructor refuses unknown keys, and nested configs are checked on their own.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kind = hints[f.name]
        kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
        if not all(k in _SCALARS for k in kinds):
            continue
        value = data[f.name]
        if not any(_accepts(k, value) for k in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise TypeError(f"{prefix}{f.name}: expected {names}, got {value!r}")
