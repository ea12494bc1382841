"""A loopback AWS for the two reads the estate makes with the AWS SDK itself (boto3): an EC2 VM's console
(``GetConsoleOutput``, EC2's query protocol and XML answer) and the account's EC2 quotas (Service Quotas'
``ListServiceQuotas``, JSON 1.1). Point the SDK here its own way: ``AWS_ENDPOINT_URL_EC2`` and
``AWS_ENDPOINT_URL_SERVICE_QUOTAS``.

The VM's resources themselves are made by pulumi-aws, which the tests run under mocks; this answers only
what the program reads outside that provider.
"""
from __future__ import annotations

import base64
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from loopback.base import FakeServer, Reply

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class LoopbackAws(FakeServer):
    vendor = "aws"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.consoles: Dict[str, str] = {}
        """Instance id -> what the VM printed to its console (an unknown id is ``InvalidInstanceID``)."""
        self.denied: Optional[str] = None
        """An error code every EC2 call answers with (``UnauthorizedOperation`` for a role without rights)."""
        self.quotas: List[Dict[str, Any]] = []
        """The account's EC2 quotas, as Service Quotas lists them (``QuotaName``, ``QuotaCode``, ``Value``)."""
        self.regions: List[Optional[str]] = []
        """The region of every request, from its SigV4 credential scope."""

    def handle(self, h, method, body):
        auth = h.headers.get("Authorization") or ""
        scope = auth.split("Credential=", 1)[1].split("/") if "Credential=" in auth else []
        with self.lock:
            self.regions.append(scope[2] if len(scope) > 2 else None)
        if h.headers.get("X-Amz-Target", "").startswith("ServiceQuotasV20190624."):
            body = {"target": h.headers["X-Amz-Target"].split(".", 1)[1], **(body or {})}
        super().handle(h, method, body)

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Reply:
        if isinstance(body, dict) and "target" in body:
            return self._quotas(body)
        form = {k: v[0] for k, v in parse_qs(body if isinstance(body, str) else "").items()}
        if form.get("Action") != "GetConsoleOutput":
            return self._ec2_error(400, "InvalidAction", f"{form.get('Action')!r} is not served here")
        if self.denied:
            return self._ec2_error(403, self.denied, "You are not authorized to perform this operation.")
        instance = form.get("InstanceId", "")
        if instance not in self.consoles:
            return self._ec2_error(400, "InvalidInstanceID.NotFound", f"The instance ID '{instance}' does not exist")
        output = base64.b64encode(self.consoles[instance].encode()).decode()
        return 200, (f'<?xml version="1.0" encoding="UTF-8"?>\n<GetConsoleOutputResponse xmlns="{EC2_NS}">'
                     f"<requestId>{self.next_id()}</requestId><instanceId>{escape(instance)}</instanceId>"
                     f"<timestamp>2026-11-24T00:00:00.000Z</timestamp><output>{output}</output>"
                     "</GetConsoleOutputResponse>")

    def _ec2_error(self, status: int, code: str, message: str) -> Reply:
        return status, (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                        f"<Message>{escape(message)}</Message></Error></Errors>"
                        f"<RequestID>{self.next_id()}</RequestID></Response>")

    def _quotas(self, body: Dict[str, Any]) -> Reply:
        if body["target"] != "ListServiceQuotas" or body.get("ServiceCode") != "ec2":
            return 400, {"__type": "InvalidParameterValueException", "message": "not served here"}
        # Two pages, as the API pages a long list: the client must follow NextToken.
        half = len(self.quotas) // 2
        if not half:
            return 200, {"Quotas": self.quotas}
        if body.get("NextToken") == "page-2":
            return 200, {"Quotas": self.quotas[half:]}
        return 200, {"Quotas": self.quotas[:half], "NextToken": "page-2"}
