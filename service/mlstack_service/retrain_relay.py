"""Alertmanager -> GitHub: turns a firing drift alert into a `workflow_dispatch` run of retrain.yml.

    python -m mlstack_service.retrain_relay

Alertmanager's webhook sends its own JSON and cannot shape the body GitHub's dispatch API wants, so this small
server sits between them. It calls "Create a workflow dispatch event" (POST /repos/{owner}/{repo}/actions/workflows/
{workflow}/dispatches, body `ref` and string `inputs` the workflow declares), which a fine-grained token with
Actions: write may call and nothing more: the token cannot push code, unlike `repository_dispatch`, whose endpoint
needs Contents: write (docs.github.com, REST API, "Permissions required for fine-grained personal access tokens":
the Actions table lists POST .../actions/workflows/{workflow_id}/dispatches as write, the Contents table lists
POST /repos/{owner}/{repo}/dispatches).

POST /alerts takes an Alertmanager webhook (version 4) that carries the relay's bearer token (Alertmanager's
`http_config.authorization.credentials_file`); a request without it gets 401. A firing alert sends one dispatch, then
the relay stays quiet for the cool-down, whatever the alerts' labels say: the cool-down is global, so no label a
sender chooses (a made-up model name) can start another retraining. Alertmanager repeats a firing alert and a
retraining run takes a while. A GitHub failure is answered with a 502, so Alertmanager retries.
"""

import asyncio
import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import uvicorn
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlstack_service.http_body import DISCARD_LIMIT_FACTOR, discard_body
from mlstack_service.logs import configure_logging, log_event
from mlstack_service.settings import describe_invalid_settings

Scope = dict[str, Any]
MAX_BODY_BYTES = 1 << 20
GITHUB_TIMEOUT_SECONDS = 10
INPUT_FIELD_CHARS = 200  # per alert field: 20 alerts stay far below GitHub's 65,535-character limit on inputs


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLSTACK_RELAY_", frozen=True)

    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name on GitHub")
    github_token: SecretStr = Field(
        description="a fine-grained token with Actions: write on the repository (and nothing else)"
    )
    webhook_token: SecretStr = Field(
        min_length=16, description="the bearer token Alertmanager must send (its credentials_file holds the same)"
    )
    github_api_url: str = Field("https://api.github.com", description="GitHub's REST API (GitHub Enterprise: yours)")
    workflow: str = Field(
        "retrain.yml", pattern=r"^[A-Za-z0-9_.-]{1,100}\.ya?ml$", description="the workflow file it dispatches"
    )
    ref: str = Field("main", pattern=r"^[A-Za-z0-9_./-]{1,200}$", description="the branch the workflow runs on")
    cooldown_seconds: float = Field(6 * 3600, ge=0, description="quiet time after a dispatch, for every model")
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    log_level: str = "info"


class GitHubError(Exception):
    pass


class RetrainRelay:
    """The ASGI app: POST /alerts, GET /healthz."""

    def __init__(self, settings: RelaySettings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self._last_dispatch: float | None = None
        # Compared as digests, so the comparison's time says nothing about the token (whatever its length).
        self._webhook_digest = hashlib.sha256(settings.webhook_token.get_secret_value().encode()).digest()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                presented = hashlib.sha256(credentials.strip()).digest()
                return scheme.lower() == b"bearer" and hmac.compare_digest(presented, self._webhook_digest)
        return False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup: nothing to load
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        route = (scope["method"], scope["path"])
        headers = [(b"content-type", b"application/json")]
        if route == ("GET", "/healthz"):
            status, document = 200, {"status": "ok"}
        elif route == ("POST", "/alerts") and not self._authorized(scope):
            await discard_body(receive, MAX_BODY_BYTES * DISCARD_LIMIT_FACTOR)
            status, document = 401, {"error": "POST /alerts needs the relay's token: Authorization: Bearer <token>"}
            headers.append((b"www-authenticate", b'Bearer realm="retrain-relay"'))
        elif route == ("POST", "/alerts"):
            request_body = await self._body(receive)
            if request_body is None:
                status, document = 413, {"error": f"the body exceeds {MAX_BODY_BYTES} bytes"}
            else:
                status, document = await self._alerts(request_body)
        else:
            status, document = 404, {"error": f"no route {scope['method']} {scope['path']}; POST /alerts"}
        body = orjson.dumps(document)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _body(receive: Any) -> bytes | None:
        """The request body, or None past MAX_BODY_BYTES."""
        chunks, total = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                if message.get("more_body", False):
                    await discard_body(receive, MAX_BODY_BYTES * DISCARD_LIMIT_FACTOR)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _alerts(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return 400, {"error": f"the body is not JSON: {error}"}
        if not isinstance(document, dict) or not isinstance(document.get("alerts"), list):
            return 400, {"error": "expected an Alertmanager webhook: an object with an 'alerts' list"}
        firing: dict[str, list[dict[str, Any]]] = {}
        for alert in document["alerts"]:
            if not isinstance(alert, dict) or alert.get("status") != "firing":
                continue
            labels = alert.get("labels") or {}
            firing.setdefault(str(labels.get("model_name", "unknown")), []).append(alert)
        dispatched: list[str] = []
        cooling: list[str] = []
        now = time.monotonic()
        for model, alerts in sorted(firing.items()):
            last = self._last_dispatch
            if dispatched or (last is not None and now - last < self.settings.cooldown_seconds):
                cooling.append(model)
                continue
            payload = self._dispatch_body(model, alerts, str(document.get("externalURL", "")))
            try:
                await asyncio.to_thread(self._post_dispatch, payload)
            except GitHubError as error:
                log_event(self.logger, logging.ERROR, "dispatch failed", model=model, reason=str(error))
                return 502, {"error": str(error), "dispatched": dispatched}
            self._last_dispatch = now
            dispatched.append(model)
            log_event(self.logger, logging.INFO, "dispatched retraining", model=model, alerts=len(alerts))
        return 202, {"dispatched": dispatched, "cooling_down": cooling}

    def _dispatch_body(self, model: str, alerts: list[dict[str, Any]], source: str) -> dict[str, Any]:
        """The workflow dispatch body: `ref` and the inputs retrain.yml declares, each a string (GitHub refuses an
        input the workflow does not declare)."""

        def field(value: Any) -> str:
            return str(value)[:INPUT_FIELD_CHARS]

        summaries = [
            {
                "alertname": field(alert.get("labels", {}).get("alertname", "")),
                # A feature alert names its feature as a label; the decision alert lists the most drifted ones
                # in its `features` annotation.
                "feature": field(
                    alert.get("labels", {}).get("feature") or alert.get("annotations", {}).get("features", "").strip()
                ),
                "summary": field(alert.get("annotations", {}).get("summary", "")),
                "starts_at": field(alert.get("startsAt", "")),
            }
            for alert in alerts[:20]  # the inputs stay small whatever the group's size
        ]
        names = sorted({summary["alertname"] for summary in summaries if summary["alertname"]})
        return {
            "ref": self.settings.ref,
            "inputs": {
                "model_name": model,
                "reason": field(f"drift alert: {', '.join(names) or 'unnamed'}"),
                "alerts": orjson.dumps({"source": field(source), "alerts": summaries}).decode(),
            },
        }

    def _post_dispatch(self, payload: dict[str, Any]) -> None:
        settings = self.settings
        url = (
            f"{settings.github_api_url.rstrip('/')}/repos/{settings.repository}/actions/workflows/"
            f"{settings.workflow}/dispatches"
        )
        request = urllib.request.Request(
            url,
            data=orjson.dumps(payload),
            method="POST",
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.settings.github_token.get_secret_value()}",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=GITHUB_TIMEOUT_SECONDS) as response:
                if response.status not in (200, 204):  # 200 when GitHub returns the run's details
                    raise GitHubError(f"{url} answered {response.status}, expected 204")
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode(errors="replace")
            raise GitHubError(f"{url} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError) as error:
            raise GitHubError(f"{url} is unreachable: {error}") from None


def main() -> int:
    try:
        settings = RelaySettings()  # the required fields come from the environment
    except ValidationError as error:
        # No values: the token is among them.
        problems = describe_invalid_settings(error, "MLSTACK_RELAY_", show_values=False)
        log_event(configure_logging("info"), logging.ERROR, "refusing to start", reason=problems)
        return 1
    logger = configure_logging(settings.log_level)
    uvicorn.run(
        RetrainRelay(settings, logger),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
