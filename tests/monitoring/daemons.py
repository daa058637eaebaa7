"""Prometheus and Alertmanager as real processes for a test: same flags, same readiness route."""

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.service.conftest import free_port, wait_for


@contextlib.contextmanager
def prometheus_daemon(binary: str, flags: list[str], log_path: Path, seconds: float) -> Iterator[str]:
    """Run `binary` (prometheus or alertmanager) on a free port of 127.0.0.1; yields its URL once /-/ready says so."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, *flags, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT
        )
        try:

            def ready() -> bool:
                try:
                    return httpx.get(f"{url}/-/ready").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, seconds, f"{Path(binary).name} to become ready")
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
