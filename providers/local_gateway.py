"""A LiteLLM gateway run as a process on the machine that runs `pulumi up` (``gateway.deploy: local``).

For a workstation or the sandbox: the gateway reaches nodes directly or through SSH forwards of its own
(``providers.local_tunnel``), listens on 127.0.0.1, and keeps
its config, log and pid under ``state_dir``. The process outlives an `up` that ends (its own session),
not a killed one (``providers.local.follow_engine``); read reports it gone when it died, and diff
restarts it, so the next `up` starts it again; read keeps it when it lives but answers
slowly (never a second, unmanaged gateway); a config change restarts it with the
same master key; delete stops it, and one that will not stop is named in a warning and left (it bills
nothing), so it never holds back the nodes' deletes.

The master key is generated here (``secrets.token_urlsafe``) and only ever leaves as a secret output
(``additional_secret_outputs``) and in the process's environment, never on its command line or in a file;
the services' bearers (``env``, secret inputs) likewise reach the process through its environment only.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import Any, Dict, Optional

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from core.text import digest
from providers.http import CloudError
from providers.local import alive, delete_process, spawn, stop_process
from providers.resource import DynamicResource
from providers.ssh_forward import free_port
from providers.wait import WaitTimeout, wait_for, within

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 180.0


def litellm_binary() -> Path:
    return Path(os.environ.get("GPU_ESTATE_LITELLM", ROOT / ".venv-gateway" / "bin" / "litellm"))


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/liveliness", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class LocalGatewayProvider(ResourceProvider):
    def _start(self, props: Dict[str, Any], master_key: str) -> Dict[str, Any]:
        binary = litellm_binary()
        if not binary.exists():
            raise CloudError(f"no LiteLLM at {binary}: run `make setup` (or set GPU_ESTATE_LITELLM)")
        state = Path(props["state_dir"])
        state.mkdir(parents=True, exist_ok=True)
        (state / "config.yaml").write_text(props["config"])
        for name, text in sorted((props.get("files") or {}).items()):
            (state / Path(name).name).write_text(text)  # the wake hook and its document, beside the config
        port = int(props.get("port") or 0) or free_port()
        env = {**os.environ, **(props.get("env") or {}), "LITELLM_MASTER_KEY": master_key,
               "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "NO_PROXY": "127.0.0.1,localhost",
               # The wake hook uses the estate's marketplace clients (agents/wake.py).
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = spawn([str(binary), "--config", str(state / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
                     env, state / "gateway.log", state)
        url = f"http://127.0.0.1:{port}"
        pulumi.log.info(f"gateway: starting LiteLLM on {url}")
        try:  # up once it answers; given up on once it exits or the time is over
            up = wait_for(lambda: "up" if _healthy(url) else "exited" if proc.poll() is not None else "", bool,
                          within(START_TIMEOUT_SECONDS), 0.5, f"LiteLLM answering on {url}") == "up"
        except WaitTimeout:
            up = False
        if not up:
            stop_process(proc.pid)
            tail = (state / "gateway.log").read_text(errors="replace")[-1500:]
            raise CloudError(f"gateway: LiteLLM did not come up on {url}:\n{tail}")
        (state / "gateway.pid").write_text(str(proc.pid))
        return {**props, "pid": proc.pid, "url": url, "master_key": master_key,
                "config_sha256": digest(props["config"])}

    def create(self, props: Dict[str, Any]) -> CreateResult:
        outs = self._start(props, "sk-" + secrets.token_urlsafe(30))
        return CreateResult(f"local-gateway-{outs['pid']}", outs)

    def diff(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> DiffResult:
        changed = [f.name for f in dataclasses.fields(LocalGatewayArgs) if olds.get(f.name) != news.get(f.name)]
        # A gateway that died (its provider host stopped it when a killed `up`'s engine went away) is
        # started again in place by the next `up`, with or without a refresh.
        return DiffResult(changes=bool(changed) or not alive(olds.get("pid")), replaces=[],
                          delete_before_replace=True)

    def update(self, _id: str, olds: Dict[str, Any], news: Dict[str, Any]) -> UpdateResult:
        pulumi.log.info("gateway: config changed, restarting LiteLLM")
        stop_process(olds.get("pid"))
        return UpdateResult(self._start(news, olds["master_key"]))

    def read(self, id_: str, props: Dict[str, Any]) -> ReadResult:
        if not alive(props.get("pid")):
            return ReadResult("", {})  # it died: the next up starts it again
        if not _healthy(props.get("url") or ""):
            # Alive but not answering in time (a busy machine, a slow start): it stays in state, so the
            # next up neither starts a second gateway nor leaves this one running unmanaged.
            pulumi.log.warn(f"gateway: LiteLLM (pid {props.get('pid')}) is running but did not answer its health "
                            f"check at {props.get('url')}; it stays managed as it is")
        return ReadResult(id_, props)

    def delete(self, _id: str, props: Dict[str, Any]) -> None:
        # It bills nothing: one that will not stop is named and left, never a reason to keep the nodes.
        delete_process(props.get("pid"), "gateway: LiteLLM", f"{props.get('url')}, files in {props.get('state_dir')}",
                       pulumi.log.warn)


@dataclasses.dataclass(frozen=True)
class LocalGatewayArgs:
    """The inputs of ``pulumi-python:dynamic/gateway:Local``."""

    config: pulumi.Input[str]
    """The LiteLLM config document."""
    port: int
    """Port on 127.0.0.1; 0 takes a free one."""
    state_dir: str
    """Where the config, log and pid live."""
    files: Optional[pulumi.Input[Dict[str, str]]] = None
    """Files written beside the config (the wake hook and its document); absent from the inputs when none."""
    env: Optional[pulumi.Input[Dict[str, str]]] = None
    """Secret variables the process gets (the bearers of the hosted services its routes send); absent from
    the inputs when none. A change restarts it."""

    def to_props(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (f.name in ("files", "env") and getattr(self, f.name) is None)}


class LocalGateway(DynamicResource, module="gateway", name="Local"):
    """``pulumi-python:dynamic/gateway:Local``: LiteLLM on this machine's loopback."""

    url: pulumi.Output[str]
    master_key: pulumi.Output[str]
    pid: pulumi.Output[int]
    SECRET_OUTPUTS = ("master_key",)

    def __init__(self, name: str, args: LocalGatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(LocalGatewayProvider(), name,
                         {"url": None, "master_key": None, "pid": None, "config_sha256": None, **args.to_props()},
                         opts)
