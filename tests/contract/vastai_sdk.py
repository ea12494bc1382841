"""Drives a Vast.ai API with Vast.ai's own SDK (``vastai`` from PyPI), run in ``.venv-vastai``.

    VASTAI_SERVER_URL=http://127.0.0.1:PORT .venv-vastai/bin/python tests/contract/vastai_sdk.py

Prints one JSON object: what each SDK call returned, and the GPU names the SDK knows.
"""
import json
import os
import sys

from vastai import VastAI
from vastai.data import query as vast_query

vast = VastAI(api_key="sdk-contract-key", server_url=os.environ["VASTAI_SERVER_URL"])
out = {}
offers = vast.search_offers(query="gpu_name=RTX_3090 num_gpus=2", type="bid", order="dph_total", storage=200)
out["offers"] = offers
offer = offers[0]
out["create"] = vast.create_instance(offer["id"], image="ollama/ollama:0.12.6", disk=200, label="contract-node",
                                     env="-p 11434:11434 -e OLLAMA_KEEP_ALIVE=30m", onstart_cmd="ollama serve",
                                     cancel_unavail=True, bid_price=offer["min_bid"] + 0.01, ssh=True, direct=True)
iid = out["create"]["new_contract"]
out["show"] = vast.show_instance(iid)
out["list"] = vast.show_instances()
out["bid"] = vast.change_bid(iid, price=offer["min_bid"] + 0.05)
out["stop"] = vast.stop_instance(iid)
out["start"] = vast.start_instance(iid)
out["label"] = vast.label_instance(iid, "contract-node")
out["attach"] = vast.attach_ssh(iid, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGF0ZXNhbmRib3hrZXk= contract@sdk")
out["destroy"] = vast.destroy_instance(iid)
out["after"] = vast.show_instances()
# The GPU names the SDK declares (module constants such as RTX_3090 = "RTX 3090").
out["gpu_names"] = sorted({v for k, v in vars(vast_query).items() if isinstance(v, str) and k[:1].isupper()})
json.dump(out, sys.stdout, default=str)
