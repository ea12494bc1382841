"""The project's dynamic-provider host: the SDK's own (``python -m pulumi.dynamic``), serving with more workers.

The SDK's host answers the engine with a gRPC server on a pool of 4 threads (``max_workers=4`` in
``pulumi/dynamic/__main__.py``), so at most four creates, pulls or reads of the whole stack run at once
whatever the engine's parallelism: sixteen nodes come up in four waves, each as long as a machine's boot
and its model's pull. Checked on pulumi 3.259.0 (``requirements.txt``'s pin; ``tests/unit/providers/test_dynamic_host.py``
shows the four on it). Upstream the host's pool is still 4. The issue it links is
https://github.com/pulumi/pulumi/issues/11116 ("[SDK/Python] Parallelism Flag Not Respected"): the
same defect in the Python language host, whose fix sized that host's executor by ``--parallel`` and did
not reach the dynamic-provider host; the Node.js host's counterpart was pulumi/pulumi#6716.

Each of this project's operations mostly waits (a machine booting, a model pulling), so the pool here has
``ESTATE_PROVIDER_WORKERS`` threads; unset, as many as the engine runs operations at once when
``PULUMI_PARALLEL`` says (the CLI's environment is its plugins'), and at least 64. Nothing else changes:
the SDK's servicer, its pickled providers and its protocol are used as they are. On an SDK outside the
checked versions the host warns (on stderr, which the engine keeps in its log) and runs the SDK's host
untouched. Pulumi.yaml points the ``pulumi-python`` plugin at ``providers/plugin``, whose
``pulumi-resource-pulumi-python`` runs this module.
"""
from __future__ import annotations

import os
import runpy
import sys
from concurrent import futures
from typing import Optional

DEFAULT_WORKERS = 64
SDK_POOL_SIZE = 4
"""The SDK host's ``max_workers`` on the checked versions."""
POOL_CHECKED = ("3.259.0", "3.259.0")
POOL_ISSUE = "https://github.com/pulumi/pulumi/issues/11116"


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
    """The SDK host's gRPC pool with this project's size, and only that one: the SDK builds it with
    ``max_workers=4`` (its host's only pool), and as it is built the standard library's class is put back,
    so no other pool of the process is made larger, or built from this class at all."""

    def __init__(self, max_workers=None, *args, **kwargs):
        if max_workers == SDK_POOL_SIZE:
            max_workers = max(WORKERS, max_workers)
            futures.ThreadPoolExecutor = _SdkPool
        super().__init__(max_workers, *args, **kwargs)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def larger_pool(version: Optional[str] = None) -> bool:
    """Have the next pool of the SDK's size this process builds (the SDK host's gRPC pool) hold ``WORKERS``
    threads, if the SDK (or ``version``) is a checked one. Returns whether it will."""
    from providers.sdk_workarounds import sdk_checked

    if not sdk_checked("the provider host's pool of 4", POOL_CHECKED, POOL_ISSUE, version, warn=_warn):
        return False
    futures.ThreadPoolExecutor = _Pool
    return True


def main() -> None:
    # This process serves only the dynamic providers: the SDK's host builds its gRPC pool from
    # concurrent.futures when its module runs, so the larger pool goes in first.
    larger_pool()
    # The SDK's host never looks for its engine: after a killed CLI it would serve nobody forever, and the
    # processes it started with it (providers.local.follow_engine).
    from providers.local import follow_engine

    follow_engine()
    runpy.run_module("pulumi.dynamic", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
