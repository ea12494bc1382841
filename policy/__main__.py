"""The gpu-estate CrossGuard pack. Built only here: PolicyPack() serves gRPC and never returns."""
from pulumi_policy import PolicyPack

from policy import budget, redact, safety

redact.install()

PolicyPack(name="gpu-estate", policies=budget.POLICIES + safety.POLICIES)
