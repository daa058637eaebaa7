"""A real HTTP server on 127.0.0.1 that plays the Kubernetes API for one Rollout, and a kubeconfig that points at it.

It answers GET on the Rollout and applies merge patches (RFC 7386) to it, on the object or on its `status`
subresource, recording each request's path, content type and body; `status_subresource=False` answers 404 on
`/status` like a cluster whose CRD serves none. `mlstack release ...` talks to it through the kubernetes client,
exactly as it talks to a cluster.
"""

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROLLOUT_PATH = "/apis/argoproj.io/v1alpha1/namespaces/mlstack/rollouts/model-service"
TOKEN = "test-token"


@dataclass
class Recorded:
    method: str
    path: str
    content_type: str
    body: Any


@dataclass
class FakeKubeApi:
    rollout: dict[str, Any] | None
    status_subresource: bool = True
    refuse_with: int | None = None
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    @property
    def patches(self) -> list[tuple[str, Any]]:
        """(the part patched: 'object' or 'status', body) of each PATCH, in order."""
        return [
            ("status" if request.path.endswith("/status") else "object", request.body)
            for request in self.requests
            if request.method == "PATCH"
        ]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _handler(api: FakeKubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _status(self, code: int, reason: str) -> None:
            self._answer(
                code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}
            )

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            api.requests.append(
                Recorded(method, self.path, self.headers.get("Content-Type", ""), json.loads(raw) if raw else None)
            )
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._status(401, "Unauthorized")
                return
            if api.refuse_with is not None:
                self._status(api.refuse_with, "Forbidden")
                return
            path = self.path.split("?", 1)[0]
            on_status = path == f"{ROLLOUT_PATH}/status"
            if path not in (ROLLOUT_PATH, f"{ROLLOUT_PATH}/status") or api.rollout is None:
                self._status(404, "NotFound")
                return
            if on_status and not api.status_subresource:
                self._status(404, "NotFound")
                return
            if method == "PATCH":
                body = json.loads(raw)
                if on_status:  # the status subresource changes status only
                    body = {"status": body.get("status")} if "status" in body else {}
                elif api.status_subresource:  # and the object changes everything but status
                    body = {key: value for key, value in body.items() if key != "status"}
                api.rollout = merge_patch(api.rollout, body)
            self._answer(200, api.rollout)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    return Handler


def serve(api: FakeKubeApi) -> Iterator[FakeKubeApi]:
    """Run the server for the duration of a fixture; `api.url` is its address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_kubeconfig(path: Path, server: str, clusters: dict[str, str], current: str) -> Path:
    """A kubeconfig with one context per (context name -> cluster name), all served by `server`."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server}} for cluster in sorted(set(clusters.values()))],
        "users": [{"name": "tester", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": name, "context": {"cluster": cluster, "user": "tester"}} for name, cluster in clusters.items()
        ],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
