"""A Pulumi language host for Python programs and Python policy packs, over the SDK's gRPC stubs.

The engine starts it with the engine's address as the last argument, reads the port it prints, and
calls ``Run`` to execute a program (through pulumi-language-python-exec beside this file, with the
project's virtualenv) and ``RunPlugin`` to start a policy pack (``python -m pulumi.policy``).
Dependencies are installed by the project's own set-up, so InstallDependencies does nothing, and no
plugin is reported as required: the engine loads provider plugins when a resource of theirs is
registered.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import json_format
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

VERSION = "3.259.0"
HERE = Path(__file__).resolve().parent
BAIL_EXIT_CODE = 32  # the program already reported its error through the engine


def _options(info) -> dict:
    return json_format.MessageToDict(info.options) if info and info.HasField("options") else {}


def _python(info, fallback_dir: str) -> str:
    """The interpreter of the virtualenv named in Pulumi.yaml / PulumiPolicy.yaml runtime options."""
    venv = _options(info).get("virtualenv") or os.environ.get("PULUMI_RUNTIME_VIRTUALENV")
    root = (info.root_directory if info and info.root_directory else "") or fallback_dir
    if venv:
        path = Path(venv) if os.path.isabs(venv) else Path(root) / venv
        if (path / "bin" / "python").exists():
            return str(path / "bin" / "python")
        raise RuntimeError(f"virtualenv {path} from the runtime options has no bin/python: run the set-up first")
    return os.environ.get("GPU_ESTATE_PYTHON") or sys.executable


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str):
        self.engine_address = engine_address

    def Handshake(self, request, context):
        if request.engine_address:
            self.engine_address = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request, context):
        return plugin_pb2.PluginInfo(version=VERSION)

    def GetRequiredPlugins(self, request, context):
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request, context):
        return language_pb2.GetRequiredPackagesResponse()

    def InstallDependencies(self, request, context):
        return iter(())

    def About(self, request, context):
        python = _python(request.info, os.getcwd())
        version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip()
        return language_pb2.AboutResponse(executable=python, version=version.removeprefix("Python "))

    def GetProgramDependencies(self, request, context):
        return language_pb2.GetProgramDependenciesResponse()

    def Run(self, request, context):
        info = request.info if request.HasField("info") else None
        pwd = request.pwd or os.getcwd()
        program = request.program or "."
        if info and info.program_directory:
            entry = info.entry_point or "."
            program = str(Path(info.program_directory) / entry)
        try:
            python = _python(info, pwd)
        except RuntimeError as err:
            return language_pb2.RunResponse(error=str(err))
        cmd = [python, "-u", str(HERE / "pulumi-language-python-exec"),
               "--monitor", request.monitor_address, "--engine", self.engine_address,
               "--project", request.project, "--stack", request.stack, "--pwd", pwd,
               "--dry_run", "true" if request.dryRun else "false", "--parallel", str(request.parallel or 1)]
        if request.organization:
            cmd += ["--organization", request.organization]
        if info and info.root_directory:
            cmd += ["--root_directory", info.root_directory]
        cmd += [program, *request.args]
        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        proc = subprocess.run(cmd, cwd=pwd, env=env)
        if proc.returncode == 0:
            return language_pb2.RunResponse()
        if proc.returncode == BAIL_EXIT_CODE:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {proc.returncode}")

    def RunPlugin(self, request, context):
        info = request.info if request.HasField("info") else None
        pwd = request.pwd or os.getcwd()
        python = _python(info, pwd)
        env = dict(os.environ)
        for kv in request.env:
            k, _, v = kv.partition("=")
            env[k] = v
        # The engine passes only its address; the pack's directory is the program `pulumi.policy` runs.
        pack = (info.program_directory or info.root_directory) if info else pwd
        proc = subprocess.Popen([python, "-u", "-m", "pulumi.policy", *request.args, pack], cwd=pack, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        chunks: "list" = []
        lock = threading.Condition()

        def pump(stream, field):
            for line in iter(stream.readline, b""):
                with lock:
                    chunks.append((field, line))
                    lock.notify()
            stream.close()

        threads = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
        for t in threads:
            t.start()
        context.add_callback(lambda: proc.poll() is None and proc.terminate())
        while True:
            with lock:
                while not chunks and any(t.is_alive() for t in threads):
                    lock.wait(0.1)
                pending, chunks[:] = list(chunks), []
            for field, data in pending:
                yield language_pb2.RunPluginResponse(**{field: data})
            if not pending and not any(t.is_alive() for t in threads):
                break
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())


def main(argv) -> None:
    positional = [a for a in argv if not a.startswith("-")]
    engine = positional[-1] if positional else ""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(LanguageHost(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # The engine interrupts its plugins when it is done with them: stop quietly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main(sys.argv[1:])
