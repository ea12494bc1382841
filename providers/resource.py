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

And it calls ``await_outputs_as_they_finish``. When the program's code has run, the SDK waits for the
outstanding outputs with ``asyncio.wait(..., FIRST_COMPLETED)`` on all of them, then puts the unfinished
ones back and asks again: each time some settle, every outstanding one gets a callback added and removed
and is put back in the set, from Python. Under the real engine it reaches that wait before its
registrations have started, so it waits there over every output of the estate (about 3,700 for 64 nodes)
while the engine answers the registrations one after another: about a hundred walks over thousands of
outputs. This project's version awaits the same outputs in the order they finish, watching each once, and
ends as the SDK's does (a failed output stops the program, the engine's ``ResourceRegistrationFailed`` does
not, registrations made meanwhile are awaited). On a 64-node no-change ``up`` the program's CPU went from
about 2.9 s to 2.0 s (the CLI on the sandbox, two runs each). ``ESTATE_SDK_WAIT`` keeps the SDK's own loop.

And it calls ``project_stack_traces``. The SDK sends, with every resource, the stack it was registered from,
and the engine keeps it in the resource's state: the project's own frames, then about ten of the SDK's and
asyncio's (with the operator's paths to the interpreter and the virtualenv). On a diy backend (a file or a
bucket) the engine writes the whole checkpoint after each step of an ``up``, one write after another, and
those frames were a fifth of a 64-node checkpoint: the writes are what holds back a model pull after its
machine is up. Only the project's frames are sent now (all of them when none is the project's), so each
resource still says where in the project it was declared. ``ESTATE_SDK_STACK_TRACES`` keeps the SDK's.

And it calls ``collect_garbage_less_often``. The program builds every resource, output and task of the
estate and keeps them to the end, and Python's cycle collector, at its default thresholds, went over
them again and again as they grew: under mocks (``benchmarks/bench_program.py``) 1000 nodes took 15.5
to 15.9 ms a node against 10.7 to 11.6 at 100, and about 40% less with the collector off. With a first
generation of 100,000 allocations the time per node stays flat: 9.1 ms at 1000 nodes, 7.9 to 9.7 at 100
(at 64 nodes the gain is within this host's noise). The estate makes few cycles (about 5,000 objects
freed by the collector in a 1000-node run), so they wait longer to be freed.
``ESTATE_GC_DEFAULT`` keeps Python's thresholds.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import os
import pathlib
import pickle
import types
from typing import Mapping, Optional, Tuple

import pulumi
import pulumi.runtime.resource as _sdk_resource
import pulumi.runtime.stack as _sdk_stack
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


SDK_WAIT_ENV = "ESTATE_SDK_WAIT"
"""Set (to anything) to keep the SDK's own wait for the outstanding outputs."""
_SDK_WAIT_FOR_RPCS = _sdk_stack.wait_for_rpcs  # the SDK's, before any replacement


async def _await_outstanding_outputs() -> None:
    """Await every output the program still has outstanding, including those made meanwhile, in the order
    they finish. A failure stops here with its exception, except the engine's marker for a failed
    registration, which the SDK ignores at exit (continue-on-error updates)."""
    outputs = _sdk_stack.SETTINGS
    while True:
        with outputs.lock:
            if not outputs.outputs:
                return
            pending = list(outputs.outputs)
            outputs.outputs.clear()
        for finished in asyncio.as_completed(pending):
            try:
                await finished
            except _sdk_stack.ResourceRegistrationFailed:
                pass


async def _wait_for_rpcs(await_all_outstanding_tasks: bool = True) -> None:
    """``pulumi.runtime.stack.wait_for_rpcs`` with the outstanding outputs awaited as they finish: the SDK's
    own loop waits for the registrations, this one for the outputs, until neither has any left."""
    while True:
        await _SDK_WAIT_FOR_RPCS(await_all_outstanding_tasks=False)
        if not await_all_outstanding_tasks:
            return
        await _await_outstanding_outputs()
        if not _sdk_stack._get_rpc_manager().rpcs:
            return


def await_outputs_as_they_finish(environ: Mapping[str, str] = os.environ) -> bool:
    """Have the SDK wait for the program's outstanding outputs in the order they finish, unless
    ``ESTATE_SDK_WAIT`` is set in ``environ`` (then the SDK's own wait is in place). Returns whether this
    project's wait is. Calling it again with the same environment changes nothing."""
    ours = not environ.get(SDK_WAIT_ENV)
    _sdk_stack.wait_for_rpcs = _wait_for_rpcs if ours else _SDK_WAIT_FOR_RPCS
    return ours


SDK_STACK_ENV = "ESTATE_SDK_STACK_TRACES"
"""Set (to anything) to keep the whole stack the SDK records with each resource."""
_SDK_GET_STACK_TRACE = _sdk_resource._get_stack_trace  # the SDK's, before any replacement
PROJECT_DIRS = tuple({pathlib.Path(os.path.abspath(__file__)).parent.parent,
                      pathlib.Path(__file__).resolve().parent.parent})
"""The project's directory as its modules were imported from, and with links resolved."""


@functools.lru_cache(maxsize=None)
def _uri_prefixes(project: Tuple[pathlib.Path, ...]) -> Tuple[str, ...]:
    """The ``file://`` URIs of the project's directories, as the SDK writes a frame's (``Path.as_uri``)."""
    return tuple(p.as_uri().rstrip("/") + "/" for p in project)


_PACKAGES = ("/site-packages/", "/dist-packages/")


def project_frames(trace, project: Tuple[pathlib.Path, ...] = PROJECT_DIRS):
    """``trace`` (the SDK's ``StackTrace`` message) with only the frames in the project's own files (not an
    installed package's, in a virtualenv inside the project or elsewhere), in their order; the whole of it
    when none is."""
    prefixes = _uri_prefixes(project)
    kept = [f for f in trace.frames
            if f.pc.uri.startswith(prefixes) and not any(p in f.pc.uri for p in _PACKAGES)]
    if not kept or len(kept) == len(trace.frames):
        return trace
    return type(trace)(frames=kept)


def _get_project_stack_trace():
    return project_frames(_SDK_GET_STACK_TRACE())


def project_stack_traces(environ: Mapping[str, str] = os.environ) -> bool:
    """Record only the project's frames in each resource's stack trace, unless ``ESTATE_SDK_STACK_TRACES``
    is set in ``environ`` (then the SDK's whole stack is). Returns whether the frames are trimmed. Calling
    it again with the same environment changes nothing."""
    ours = not environ.get(SDK_STACK_ENV)
    _sdk_resource._get_stack_trace = _get_project_stack_trace if ours else _SDK_GET_STACK_TRACE
    return ours


GC_DEFAULT_ENV = "ESTATE_GC_DEFAULT"
"""Set (to anything) to keep Python's own thresholds for the cycle collector."""
GC_THRESHOLDS = (100_000, 50, 100)
"""Allocations before a first-generation pass, and passes of each generation before the next one's."""


def collect_garbage_less_often(environ: Mapping[str, str] = os.environ) -> bool:
    """Run the cycle collector at ``GC_THRESHOLDS`` unless ``ESTATE_GC_DEFAULT`` is set in ``environ``.
    Returns whether the thresholds are this project's."""
    if environ.get(GC_DEFAULT_ENV):
        return False
    gc.set_threshold(*GC_THRESHOLDS)
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
