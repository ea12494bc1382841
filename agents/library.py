"""The project files an agent needs on a host where the project is not installed (the gateway host's
``lib/``): the modules it imports, followed through the project's own imports, and the data files they
read.

Computed from the sources (``ast``, without importing them), so a new import in an agent or in the
clients it uses ships with it instead of failing on the host.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import FrozenSet, Iterable, Set, Tuple

from core.vendors import MARKETPLACES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "providers", "agents")
"""The project's packages an agent may import: the pure layer, the vendor clients and its own."""
DATA = ("assets/images/compose.yaml", "assets/prices/gpus.json")
"""Files the shipped modules read at import (``core.images``, ``core.catalog``)."""
ROUTED = tuple(f"providers.{cloud}" for cloud in MARKETPLACES)
"""The marketplace clients ``providers.gpu_cloud.client`` imports by name, which no ``import`` states."""


def _path(module: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str, path: Path, root: Path) -> Set[str]:
    """The project modules ``module`` imports, each as a dotted name (a package's submodules named in
    ``from pkg import sub`` included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parts, base]))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES and _path(name, root)}


def modules(entries: Iterable[str], root: Path = ROOT) -> FrozenSet[str]:
    """``entries`` and every project module they import, transitively, with their packages."""
    seen: Set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _path(name, root)
        if path is None:
            raise ModuleNotFoundError(f"{name} is not a module of this project")
        seen.add(name)
        todo.extend(_imports(name, path, root))
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the packages it sits in
    return frozenset(seen)


def files(entries: Iterable[str], root: Path = ROOT) -> Tuple[str, ...]:
    """What to ship for ``entries``: their modules' files (relative to ``root``) and ``DATA``, sorted."""
    paths = {str(_path(name, root).relative_to(root)) for name in modules(entries, root)}
    return tuple(sorted(paths | set(DATA)))


GATEWAY_AGENTS = ("agents.spend", "agents.wake", "agents.health", "agents.identity", *ROUTED)
"""What a gateway host runs: the spend watcher, the wake hook, the health agent and the identity proxy, with every
marketplace client."""
