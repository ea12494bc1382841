"""Storage rules: bucket readers are nodes of the estate."""
from __future__ import annotations

from typing import List

from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    for bname, bucket in spec.storage.items():
        for i, reader in enumerate(bucket.readers):
            if reader not in spec.nodes:
                problems.append((f"{NAMESPACE}:storage.{bname}.readers[{i}]", f"no node {reader!r} in {NAMESPACE}:nodes"))
    return problems
