"""The gpu-estate CrossGuard pack. Built only here: PolicyPack() serves gRPC and never returns."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pulumi_policy import PolicyPack  # noqa: E402

from policy import budget, redact, safety  # noqa: E402

redact.install()

PolicyPack(name="gpu-estate", policies=budget.POLICIES + safety.POLICIES)
