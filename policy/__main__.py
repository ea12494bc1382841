"""The gpu-estate CrossGuard pack. Built only here: PolicyPack() serves gRPC and never returns.

The pack imports the ``policy`` and ``core`` packages of the tree it sits in, not whichever copy is
installed: pull-request previews run the base branch's pack (its rules and limits) against the pull
request's program, so a pull request cannot loosen what judges it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack  # noqa: E402

from policy import budget, images, redact, safety  # noqa: E402

redact.install()

PolicyPack(name="gpu-estate", policies=budget.POLICIES + safety.POLICIES + images.POLICIES)
