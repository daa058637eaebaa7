"""Real server processes, a real moto S3 server, and request bodies for the service's tests."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest

from mlstack_service.synthetic import generate_applications
from tests.service.models import EXAMPLE_PACKAGE

STARTUP_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def infer_body(rows: int, seed: int = 1, nested: bool = True, **extra: Any) -> dict[str, Any]:
    features, _ = generate_applications(rows, seed)
    data = features.tolist() if nested else features.ravel().tolist()
    return {"inputs": [{"name": "input", "shape": [rows, 12], "datatype": "FP32", "data": data}], **extra}


def post_and_close(
    port: int, path: str, body: bytes, chunked: bool = False, headers: dict[str, str] | None = None
) -> bytes:
    """POST `body` with `Connection: close` over a raw socket, send all of it, then read the whole answer.

    A client library may read the answer early or retry; this is what a plain client does, byte for byte.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\n{extra}{framing}\r\n\r\n"
    ).encode()
    payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head + payload)
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def wait_for(condition: Any, seconds: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` when it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


@dataclass
class ServerProcess:
    """`python -m mlstack_service` on free ports, its stdout captured to a file.

    `client` talks to the public port (inference, model metadata, health); `internal` to the internal port
    (/metrics, feedback, health), the one only the cluster reaches; `grpc_port` serves OIP v2 over gRPC.
    """

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    internal_port: int
    grpc_port: int
    client: httpx.Client = field(init=False)
    internal: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.internal = httpx.Client(base_url=f"http://127.0.0.1:{self.internal_port}", timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        return lines

    def logged(self, **fields: Any) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if all(line.get(k) == v for k, v in fields.items())]

    def is_ready(self) -> bool:
        try:
            return self.client.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def metrics_text(self) -> str:
        return self.internal.get("/metrics").text

    def stop(self) -> int:
        self.client.close()
        self.internal.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    tmp_path: Path,
    command: list[str] | None = None,
    wait: bool = True,
    extra_env: dict[str, str] | None = None,
    **settings: str,
) -> ServerProcess:
    """Start a server; `settings` become MLSTACK_* variables (model_uri="..." -> MLSTACK_MODEL_URI)."""
    port, internal_port, grpc_port = free_port(), free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSTACK_")}
    env |= extra_env or {}
    env |= {
        "MLSTACK_HOST": "127.0.0.1",
        "MLSTACK_PORT": str(port),
        "MLSTACK_INTERNAL_PORT": str(internal_port),
        "MLSTACK_GRPC_PORT": str(grpc_port),
        "MLSTACK_MODEL_URI": str(EXAMPLE_PACKAGE),
    }
    env |= {f"MLSTACK_{key.upper()}": value for key, value in settings.items()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command or [sys.executable, "-m", "mlstack_service"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(process, port, log_path, internal_port, grpc_port)
    if wait:
        try:
            wait_for(
                lambda: server.is_ready() or process.poll() is not None, STARTUP_SECONDS, "the server to turn ready"
            )
        except AssertionError:  # no orphan left serving (or loading) after the failed test
            process.kill()
            process.wait()
            raise
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The example model served by a real process, shared by a module's tests."""
    running = start_server(tmp_path_factory.mktemp("server"), max_body_bytes="65536", max_rows="1000")
    yield running
    running.stop()


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    env: dict[str, str]

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A real moto server on 127.0.0.1: processes under test reach it like S3, through AWS_ENDPOINT_URL."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            return httpx.get(f"{endpoint}/moto-api/").status_code < 500
        except httpx.TransportError:
            return False

    wait_for(answering, 30, "moto_server")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield MotoS3(endpoint, env)
    process.terminate()
    process.wait(timeout=10)
    log.close()


def predictions_in_process(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What onnxruntime itself says for these rows, for comparison with the server's answer."""
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(EXAMPLE_PACKAGE / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows.astype(np.float32)})
    return labels, probabilities
