"""The dynamic-provider host of this project: the Pulumi SDK's own (``python -m pulumi.dynamic``), serving
with more workers.

The SDK's host answers the engine with a gRPC server on a pool of 4 threads, so at most four creates,
pulls or reads of the whole stack run at once and an estate of sixteen nodes comes up in four waves.
Each of this project's operations mostly waits (a machine booting, a model pulling), so the pool here has
``ESTATE_PROVIDER_WORKERS`` threads; unset, as many as the engine runs operations at once when
``PULUMI_PARALLEL`` says (the CLI's environment is its plugins'), and at least 64. Nothing else changes:
the SDK's servicer, its pickled providers and its protocol are used as they are. Pulumi.yaml points the
``pulumi-python`` plugin at ``providers/plugin``, whose ``pulumi-resource-pulumi-python`` runs this module.
"""
from __future__ import annotations

import os
import runpy
from concurrent import futures

DEFAULT_WORKERS = 64


def workers(environ=os.environ) -> int:
    """The pool's size: ``ESTATE_PROVIDER_WORKERS`` if set, else the engine's ``PULUMI_PARALLEL`` and at least
    ``DEFAULT_WORKERS``, so no operation the engine has started waits here for a thread."""
    if environ.get("ESTATE_PROVIDER_WORKERS"):
        return int(environ["ESTATE_PROVIDER_WORKERS"])
    parallel = environ.get("PULUMI_PARALLEL", "")
    return max(DEFAULT_WORKERS, int(parallel) if parallel.isdigit() else 0)


WORKERS = workers()
_SdkPool = futures.ThreadPoolExecutor


class _Pool(_SdkPool):
    """The SDK's pool with this project's size (the SDK builds it with ``max_workers=4``)."""

    def __init__(self, max_workers=None, *args, **kwargs):
        super().__init__(max(WORKERS, max_workers or 0), *args, **kwargs)


def main() -> None:
    # This process serves only the dynamic providers: the SDK's host builds its gRPC pool from
    # concurrent.futures when its module runs, so the larger pool goes in first.
    futures.ThreadPoolExecutor = _Pool
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
