"""A Fly.io app with one always-on Machine running llama.cpp's CPU server (``providers/fly.py``)."""
from __future__ import annotations

from components.services.base import Service, ServiceRequest
from core.services.fly import API_KEY_SECRET, PORT, FlyService
from providers.fly import FlyMachine


def build(req: ServiceRequest) -> Service:
    s: FlyService = req.spec
    machine = FlyMachine(f"service-{req.name}", {
        "app": s.app, "org": s.org, "region": s.region, "image": s.image,
        "guest": {"cpu_kind": s.cpu_kind, "cpus": s.cpus, "memory_mb": s.memory_mb},
        "volume_gb": s.volume_gb, "port": PORT, "env": s.server_env(),
        "secret_name": API_KEY_SECRET, "stamps": req.stamp,
    }, req.opts)
    return Service(resource=machine, url=machine.url, api_key=machine.api_key)
