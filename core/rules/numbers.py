"""Every number a stack holds is finite and not negative: prices, bids, budgets, hours, sizes, timeouts.

YAML reads ``.inf`` and ``.nan`` as floats and pydantic accepts them where a field is only bounded
below (``budget.daily_usd: .inf`` passes ``gt=0``): an infinite cap is no cap, and NaN compares false with
every limit, so each rule that compares with it would let it through. None of the estate's numbers is
negative either. Checked first, over the whole parsed document, so no later rule computes with one.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, List, Tuple

from pydantic import BaseModel

from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def _numbers(value: Any, path: str) -> Iterator[Tuple[str, float]]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _numbers(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}.{i}")


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    for path, n in _numbers(spec, ""):
        if isinstance(n, float) and not math.isfinite(n):
            problems.append((f"{NAMESPACE}:{path}", f"a number here must be finite (got {n!r})"))
        elif n < 0:
            problems.append((f"{NAMESPACE}:{path}", f"a number here cannot be negative (got {n!r})"))
    return problems
