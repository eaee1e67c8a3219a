"""S3 servers the tests start on loopback: moto's server mode, and a TCP relay in front of it
that a test can cut to make the endpoint go down in the middle of a run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _missing(what: str) -> None:
    message = f"{what}; install the test group (pip install --group test) for the S3 tests"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test-access-key",
            aws_secret_access_key="test-secret-key",
            region_name="us-east-1",
        )

    def create_buckets(self, names: tuple[str, ...]) -> None:
        client = self.client()
        for name in names:
            client.create_bucket(Bucket=name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto(workdir: Path, env: dict[str, str] | None = None) -> MotoServer:
    """moto's server, started and waited for; `env` adds variables (e.g. to turn on its
    checking of credentials)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as error:
        _missing(f"moto[server] and boto3 are not installed ({error})")
    port = free_port()
    log = workdir / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto's server did not start on {endpoint}: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    return MotoServer(endpoint, process, log)


class Relay:
    """Forwards TCP connections from a free loopback port to `target_port`; `cut()` closes the
    listener and every connection, as an endpoint that goes down. With `cut_after_bytes`, it cuts
    itself once that many bytes went upstream (in the middle of an upload)."""

    def __init__(self, target_port: int, cut_after_bytes: int | None = None) -> None:
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.forwarded = 0
        self.returned = 0
        #: The head of every GET request sent through (a GET has no body: it arrives whole).
        self.gets: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.is_cut = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                if self.is_cut:
                    client.close()
                    upstream.close()
                    continue
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                if not upstream:
                    with self._lock:
                        self.returned += len(data)
                    continue
                if upstream:
                    with self._lock:
                        self.forwarded += len(data)
                        if data.startswith(b"GET "):
                            self.gets.append(data[:4096].decode("latin-1"))
                        over = self.cut_after_bytes is not None and self.forwarded >= self.cut_after_bytes
                    if over:
                        self.cut()
                        return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            self.is_cut = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
