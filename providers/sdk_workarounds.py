"""Where this project works around a defect of the Pulumi Python SDK, and the guard every such workaround
goes through: each is checked on the SDK versions it names, and on any other version it warns and leaves
the SDK as it is. A workaround is here only while a test shows its defect on the pinned SDK
(``tests/unit/providers/test_sdk_workarounds.py``); the provider host's pool is the other one (``dynamic_host.py``).

The pickler's wrappers, checked on pulumi 3.259.0 (``requirements.txt``'s pin), tracked upstream as
https://github.com/pulumi/pulumi/issues/17803 ("maximum recursion depth exceeded ... in dynamic provider",
closed there for want of a reproduction; the test is one). Registering a dynamic resource serializes its
provider (``pulumi.dynamic.dynamic.serialize_provider``), which replaces ``pickle._Pickler._batch_setitems``
with a wrapper that sorts the items and calls the method it found, and never puts that method back. The
next registration wraps the wrapper, so pickling a dictionary recurses once per dynamic resource registered
so far: each registration costs more than the last, and a program fails with ``RecursionError`` once the
wrappers and the pickled object's nesting pass Python's limit of 1000 frames. Under mocks that is about 320
registrations of a provider defined in ``__main__`` (pickled by value, so nested), and for this project's
providers (pickled by reference) between 900 and 1000: an estate of 500 nodes fails, one of 450 does not.
``pickler_left_as_found`` puts back, after each registration, the method that was there before it, so the
SDK's sort applies while it serializes (as it means to) and never piles up.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import pickle
import re
from typing import Callable, Iterator, Optional, Tuple

import pulumi

Versions = Tuple[str, str]
"""The lowest and the highest SDK release a workaround was checked on, both included."""

PICKLER_CHECKED: Versions = ("3.259.0", "3.259.0")
PICKLER_ISSUE = "https://github.com/pulumi/pulumi/issues/17803"


def sdk_version() -> str:
    """The installed Pulumi SDK's version, as its package metadata gives it."""
    return importlib.metadata.version("pulumi")


def _release(version: str) -> Optional[Tuple[int, ...]]:
    """``3.259.0`` as ``(3, 259, 0)``; None for a pre-release, a local build or anything else unlike a release."""
    return tuple(int(p) for p in version.split(".")) if re.fullmatch(r"\d+(\.\d+)*", version) else None


_warned: set = set()


def sdk_checked(workaround: str, checked: Versions, issue: str, version: Optional[str] = None,
                warn: Optional[Callable[[str], None]] = None) -> bool:
    """Whether the installed SDK (or ``version``) is one ``workaround`` was checked on. When it is not, says so
    once per workaround through ``warn`` (the engine's log in a program, stderr elsewhere), naming the versions
    and the upstream issue, and the caller leaves the SDK alone."""
    version = sdk_version() if version is None else version
    release, low, high = _release(version), _release(checked[0]), _release(checked[1])
    if release is not None and low <= release <= high:
        return True
    if (workaround, version) not in _warned:
        _warned.add((workaround, version))
        (warn or pulumi.log.warn)(
            f"gpu-estate: pulumi {version} is not one the workaround for {workaround} was checked on "
            f"({checked[0]} to {checked[1]}); the SDK is left as it is. If the defect is still there "
            f"({issue}), check the workaround on this version and widen its range.")
    return False


@contextlib.contextmanager
def pickler_left_as_found(version: Optional[str] = None) -> Iterator[bool]:
    """Around a dynamic resource's registration: the pickler's ``_batch_setitems`` is what it was before, once
    the SDK has serialized the provider. Yields whether the workaround applies (the SDK is a checked one)."""
    if not sdk_checked("the pickler's wrappers", PICKLER_CHECKED, PICKLER_ISSUE, version):
        yield False
        return
    before = pickle._Pickler._batch_setitems
    try:
        yield True
    finally:
        pickle._Pickler._batch_setitems = before
