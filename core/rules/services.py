"""Hosted service rules: a Cloud Run service reads its model from one of the estate's GCS buckets, no two
services share a Fly app, and no name is both a service's and a serverless endpoint's (the gateway's
routes are told apart by it)."""
from __future__ import annotations

from typing import Dict, List

from core.errors import Problem
from core.spec import NAMESPACE, EstateSpec


def check(spec: EstateSpec) -> List[Problem]:
    problems: List[Problem] = []
    apps: Dict[str, str] = {}
    for name, s in spec.services.items():
        path = f"{NAMESPACE}:services.{name}"
        if name in spec.serverless:
            problems.append((path, f"{name!r} is also a serverless endpoint's name: give the service another"))
        bucket = getattr(s, "bucket", None)
        if bucket is not None:
            b = spec.storage.get(bucket)
            if b is None or b.provider != "gcs":
                known = ", ".join(n for n, x in spec.storage.items() if x.provider == "gcs") or "none"
                problems.append((f"{path}.bucket", f"not a GCS bucket of {NAMESPACE}:storage (gcs buckets: {known}) "
                                                   f"(got {bucket!r})"))
        app = getattr(s, "app", None)
        if app is not None:
            if app in apps:
                problems.append((f"{path}.app", f"service {apps[app]!r} already runs Fly app {app!r}"))
            apps[app] = name
    return problems
