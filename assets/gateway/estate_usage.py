"""The gateway's usage callback, loaded by LiteLLM from beside its config (``callbacks``): one JSON line per
answered request, for the savings report (``core/savings.py``) and the status view.

LiteLLM hands each successful call's standard logging payload to ``async_log_success_event`` (its
``standard_logging_object``): the alias asked for (``model_group``), the deployment that answered
(``model_id``, the config's ``<alias>@<node>`` or ``<name>@<provider>``), its tokens and its cost. This
writes those, the alias the client asked for (which a fallback keeps), and the number of images an image call returned, to ``usage-<YYYY-MM>.jsonl`` in
``ESTATE_USAGE_DIR`` (default beside this file): no prompt, no answer, no key. A line that cannot be
written is dropped with a line on stderr, never an error for the client.
"""
import datetime
import json
import os
import sys
import threading

from litellm.integrations.custom_logger import CustomLogger

USAGE_DIR = os.environ.get("ESTATE_USAGE_DIR") or os.path.dirname(os.path.abspath(__file__))
_lock = threading.Lock()


def requested_alias(kwargs, payload):
    """The alias the client asked for: on a fallback LiteLLM's router keeps it as ``original_model_group`` in
    the call's metadata (``router_utils/fallback_event_handlers.py``), while ``model_group`` names the
    fallback that answered."""
    params = kwargs.get("litellm_params") or {}
    for bucket in (params.get("metadata"), params.get("litellm_metadata"), kwargs.get("metadata"), kwargs.get("litellm_metadata")):
        if isinstance(bucket, dict) and bucket.get("original_model_group"):
            return bucket["original_model_group"]
    return payload.get("model_group")


def usage_line(payload, response_obj, alias=None):
    """The line of one call, from LiteLLM's standard logging payload."""
    end = float(payload.get("endTime") or 0.0)
    call = str(payload.get("call_type") or "")
    images = len(getattr(response_obj, "data", None) or []) if "image" in call else 0
    return {"at": end, "month": datetime.datetime.fromtimestamp(end, datetime.timezone.utc).strftime("%Y-%m"),
            "alias": alias or payload.get("model_group"), "group": payload.get("model_group"),
            "id": payload.get("model_id"), "call": call,
            "input_tokens": int(payload.get("prompt_tokens") or 0), "output_tokens": int(payload.get("completion_tokens") or 0),
            "images": images, "cost_usd": float(payload.get("response_cost") or 0.0)}


class EstateUsage(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        payload = kwargs.get("standard_logging_object") or {}
        try:
            line = usage_line(payload, response_obj, requested_alias(kwargs, payload))
            path = os.path.join(USAGE_DIR, f"usage-{line['month']}.jsonl")
            with _lock, open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, sort_keys=True) + "\n")
        except (OSError, ValueError, TypeError) as err:
            print(f"estate usage: a line was not written: {err}", file=sys.stderr, flush=True)


handler = EstateUsage()
