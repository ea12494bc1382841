"""A dynamic provider whose create calls a loopback server that holds each call until enough are in flight:
served to the SDK's provider host and to the project's, it shows how many calls a host runs at once.
It imports only the loopback servers, which import nothing of the project, so a host imports it (by
reference, as dill pickles it) without the program's packages."""
import json
import threading
import urllib.request

from pulumi.dynamic import CreateResult, ResourceProvider

from loopback.base import FakeServer


class HoldingProvider(ResourceProvider):
    def create(self, props):
        with urllib.request.urlopen(props["url"], timeout=60) as answer:
            return CreateResult(json.load(answer)["id"], {})


class Gate(FakeServer):
    """Holds each request until ``target`` are in flight at once (then lets every one go) or ``patience``
    seconds pass, and records the most it saw in flight at once."""

    def __init__(self, target: int, patience: float = 2.0):
        super().__init__()
        self.target, self.patience = target, patience
        self.in_flight = self.peak = 0
        self.opened = False
        self._cond = threading.Condition()

    def route(self, method, path, query, body):
        with self._cond:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.opened = self.opened or self.in_flight >= self.target
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.opened, timeout=self.patience)
            self.in_flight -= 1
        return 200, {"id": "held"}
