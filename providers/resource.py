"""The base of this project's dynamic resources: the SDK's ``pulumi.dynamic.Resource``, registered so that
registering many of them stays cheap.

The SDK serializes each dynamic resource's provider with a pure-Python pickler whose
``_batch_setitems`` it wraps to sort dictionaries, and it never restores that method: every
registration wraps the previous wrapper once more. Pickling a dictionary then recurses once per
dynamic resource registered so far, so a program's time grows with the square of its resources and the
run fails with ``RecursionError`` at about a thousand of them (measured with
``benchmarks/bench_program.py``). Before each registration this base puts the original method back, so
the SDK wraps it exactly once, as it means to.

The program also calls ``quiet_sdk_debug`` before it registers anything. The SDK's runtime sends about four
debug messages of its own for every resource ("registering resource", "registration prepared", ...), each
a blocking call to the engine on the program's only thread, and the engine writes each to its log.
They show only under ``pulumi up --debug``, yet they cost a no-change ``up`` of 64 nodes about 0.8 s of
its 5.6 s on two cores (the CLI on the sandbox, runs with and without them interleaved). They are dropped
unless ``ESTATE_SDK_DEBUG`` is set; the program's own debug messages, and every info, warning and error,
go to the engine as before.
"""
from __future__ import annotations

import importlib
import os
import pickle
import types
from typing import Mapping, Optional, Tuple

import pulumi
from pulumi.dynamic import Resource

_PICKLER_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # the original, before any serialization

SDK_DEBUG_ENV = "ESTATE_SDK_DEBUG"
"""Set (to anything) to keep the SDK runtime's own debug messages, for ``pulumi up --debug``."""
SDK_RUNTIME_MODULES = ("pulumi.runtime.resource", "pulumi.runtime.rpc", "pulumi.runtime.rpc_manager",
                       "pulumi.runtime.stack", "pulumi.runtime.invoke", "pulumi.runtime._callbacks")
"""The SDK modules whose ``log`` the runtime's per-resource debug messages go through."""


class _WithoutDebug:
    """``pulumi.log`` as the SDK runtime sees it: ``debug`` does nothing, the rest is ``pulumi.log``."""

    def __init__(self, log: types.ModuleType):
        self._log = log

    def debug(self, *_args, **_kwargs) -> None:
        return None

    def __getattr__(self, name: str):
        return getattr(self._log, name)


def quiet_sdk_debug(environ: Mapping[str, str] = os.environ) -> bool:
    """Drop the SDK runtime's own debug messages unless ``ESTATE_SDK_DEBUG`` is set in ``environ``. Returns
    whether they are dropped. Calling it again changes nothing."""
    if environ.get(SDK_DEBUG_ENV):
        return False
    for name in SDK_RUNTIME_MODULES:
        module = importlib.import_module(name)
        log = getattr(module, "log", None)
        if isinstance(log, types.ModuleType):
            module.log = _WithoutDebug(log)
    return True


class DynamicResource(Resource):
    """``pulumi.dynamic.Resource`` with the SDK's pickler patch undone before each serialization, and the
    outputs a subclass names in ``SECRET_OUTPUTS`` kept secret in state whatever its inputs were."""

    SECRET_OUTPUTS: Tuple[str, ...] = ()

    def __init__(self, provider, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        if self.SECRET_OUTPUTS:
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=list(self.SECRET_OUTPUTS)))
        pickle._Pickler._batch_setitems = _PICKLER_BATCH_SETITEMS
        super().__init__(provider, name, props, opts)
