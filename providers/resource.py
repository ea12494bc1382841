"""The base of this project's dynamic resources: the SDK's ``pulumi.dynamic.Resource``, registered so that
registering many of them stays cheap.

The SDK serializes each dynamic resource's provider with a pure-Python pickler whose
``_batch_setitems`` it wraps to sort dictionaries, and it never restores that method: every
registration wraps the previous wrapper once more. Pickling a dictionary then recurses once per
dynamic resource registered so far, so a program's time grows with the square of its resources and the
run fails with ``RecursionError`` at about a thousand of them (measured with
``benchmarks/bench_program.py``). Before each registration this base puts the original method back, so
the SDK wraps it exactly once, as it means to.
"""
from __future__ import annotations

import pickle
from typing import Optional, Tuple

import pulumi
from pulumi.dynamic import Resource

_PICKLER_BATCH_SETITEMS = pickle._Pickler._batch_setitems  # the original, before any serialization


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
