"""An S3 API on loopback: moto's own server (``moto_server`` from ``moto[server]``, PyPI), for the estate's
bucket code to run against a real S3 implementation instead of a fake of the project's.

    with LoopbackS3() as s3:
        s3.create_bucket("gpu-estate-sandbox-models")
        client = s3.client()                    # boto3, pointed at the server
        s3.endpoint, s3.access_key, s3.secret_key

The server keeps everything in memory and answers any access key; the keys handed out are the sandbox's
own, never an account's. It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from providers.ssh_forward import free_port
from sandbox import real_ollama

START_SECONDS = 30.0
REGION = "us-east-1"


def server_binary() -> Path:
    """``moto_server`` next to the running interpreter (the program's venv installs ``moto[server]``)."""
    return Path(sys.executable).parent / "moto_server"


def missing() -> str:
    """Why moto's server cannot run here, or ''."""
    return "" if server_binary().exists() else f"no {server_binary()}: run `make setup`"


class LoopbackS3:
    access_key = "sandbox-s3-key"
    secret_key = "sandbox-s3-secret"

    def __init__(self) -> None:
        why = missing()
        if why:
            raise RuntimeError(f"loopback S3: {why}")
        self.dir = Path(tempfile.mkdtemp(prefix="estate-s3-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "moto.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(server_binary()), "-H", "127.0.0.1", "-p", str(self.port)],
                                         env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        real_ollama.wait_answering(self.proc, self.endpoint, self.log, "moto's S3 server", self.close, START_SECONDS)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def env(self) -> dict:
        """The environment that points boto3's default client (the program's, the providers') at this server."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": REGION}

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def close(self) -> None:
        real_ollama.stop_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackS3":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
