"""The gateway's wake-on-request hook, loaded by LiteLLM from beside its config (``callbacks``).

Before a request is routed, the estate's ``Waker`` (``agents/wake.py``, on the gateway's PYTHONPATH)
makes its alias servable: it starts a stopped node and waits for it within the alias's timeout, or lets
the alias's fallbacks answer while it boots. When no node can serve in time the request gets 503 with
``Retry-After``. The wake document beside this file says which aliases, nodes and URLs; it holds no secret.
"""
import asyncio
import os

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from agents.wake import Asleep, Waker

WAKE_DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wake.json")


class EstateWake(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.waker = Waker.from_file(WAKE_DOCUMENT)

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        try:
            await asyncio.to_thread(self.waker.ensure, str(data.get("model") or ""))
        except Asleep as err:
            raise HTTPException(status_code=503, detail=str(err), headers={"Retry-After": str(err.retry_after)})
        return data


handler = EstateWake()
