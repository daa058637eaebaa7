"""The retraining loop up to GitHub: a drift alert in a real Alertmanager, routed by the config the stack deploys,
reaches the real relay process, which dispatches retrain.yml (`workflow_dispatch`) through a recording stand-in for
GitHub's API."""

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infra.monitoring.kube_prometheus_stack import alertmanager_config
from tests.conftest import REPO_ROOT
from tests.monitoring.daemons import prometheus_daemon
from tests.service.conftest import free_port, post_and_close, wait_for

TOKEN = "test-token-not-a-secret"
WEBHOOK_TOKEN = "webhook-token-not-a-secret"
AUTHORIZED = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
REPOSITORY = "example-org/mlstack"
RETRAIN_WORKFLOW = REPO_ROOT / ".github" / "workflows" / "retrain.yml"


def _declared_inputs() -> dict[str, Any]:
    """The inputs retrain.yml's workflow_dispatch declares (PyYAML reads the key `on` as True)."""
    document = yaml.safe_load(RETRAIN_WORKFLOW.read_text())
    inputs: dict[str, Any] = document[True]["workflow_dispatch"]["inputs"]
    return inputs


def _inputs(dispatch: "Dispatch") -> dict[str, str]:
    """The dispatch's inputs, checked the way GitHub checks them: every one declared by the workflow, each a
    string (GitHub answers 422 otherwise)."""
    assert set(dispatch.body) == {"ref", "inputs"}, dispatch.body
    inputs: dict[str, str] = dispatch.body["inputs"]
    assert set(inputs) <= set(_declared_inputs()), f"undeclared inputs: {set(inputs) - set(_declared_inputs())}"
    assert all(isinstance(value, str) for value in inputs.values())
    return inputs


@dataclass
class Dispatch:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeGitHub:
    url: str
    received: "queue.Queue[Dispatch]" = field(default_factory=queue.Queue)
    status: int = 204


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.received.put(Dispatch(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(fake.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def relay(github: FakeGitHub, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSTACK_")}
    env |= {
        "MLSTACK_RELAY_REPOSITORY": REPOSITORY,
        "MLSTACK_RELAY_GITHUB_TOKEN": TOKEN,
        "MLSTACK_RELAY_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "MLSTACK_RELAY_GITHUB_API_URL": github.url,
        "MLSTACK_RELAY_HOST": "127.0.0.1",
        "MLSTACK_RELAY_PORT": str(port),
        "MLSTACK_RELAY_COOLDOWN_SECONDS": "3600",
    }
    log = (tmp_path / "relay.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "mlstack_service.retrain_relay"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return process.poll() is not None

    wait_for(healthy, 30, "the relay to answer")
    assert process.poll() is None, (tmp_path / "relay.log").read_text()
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()
    assert TOKEN not in (tmp_path / "relay.log").read_text()
    assert WEBHOOK_TOKEN not in (tmp_path / "relay.log").read_text()


def _webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "retrain",
        "externalURL": "http://am",
        "alerts": list(alerts),
    }


def _alert(model: str, feature: str, status: str = "firing") -> dict[str, Any]:
    # As drift.rules.yml's ModelDecisionDrift sends it: the most drifted features in an annotation, not a label.
    labels = {"alertname": "ModelDecisionDrift", "action": "retrain", "model_name": model}
    annotations = {"summary": "decisions drifted", "features": f"{feature} "}
    return {"status": status, "labels": labels, "annotations": annotations, "startsAt": "x"}


def test_a_firing_drift_alert_becomes_one_dispatch_per_cooldown_whatever_its_labels(
    relay: str, github: FakeGitHub
) -> None:
    first = httpx.post(f"{relay}/alerts", json=_webhook(_alert("loan-approval", "credit_score")), headers=AUTHORIZED)
    assert first.status_code == 202
    assert first.json() == {"dispatched": ["loan-approval"], "cooling_down": []}
    dispatch = github.received.get(timeout=10)
    # The workflow dispatch endpoint (Actions: write), not /repos/{owner}/{repo}/dispatches (Contents: write).
    assert dispatch.path == f"/repos/{REPOSITORY}/actions/workflows/retrain.yml/dispatches"
    assert dispatch.headers["authorization"] == f"Bearer {TOKEN}"
    assert dispatch.body["ref"] == "main"
    inputs = _inputs(dispatch)
    assert inputs["model_name"] == "loan-approval"
    assert inputs["reason"] == "drift alert: ModelDecisionDrift"
    assert json.loads(inputs["alerts"])["alerts"][0]["feature"] == "credit_score"

    again = httpx.post(f"{relay}/alerts", json=_webhook(_alert("loan-approval", "debt_to_income")), headers=AUTHORIZED)
    assert again.json() == {"dispatched": [], "cooling_down": ["loan-approval"]}
    # The cool-down is global: a model name the sender makes up does not open a second one.
    invented = httpx.post(
        f"{relay}/alerts", json=_webhook(_alert("made-up-1", "x"), _alert("made-up-2", "y")), headers=AUTHORIZED
    )
    assert invented.json() == {"dispatched": [], "cooling_down": ["made-up-1", "made-up-2"]}
    resolved = httpx.post(
        f"{relay}/alerts", json=_webhook(_alert("churn", "tenure", status="resolved")), headers=AUTHORIZED
    )
    assert resolved.json() == {"dispatched": [], "cooling_down": []}
    assert github.received.empty()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {WEBHOOK_TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
def test_a_webhook_without_the_relays_token_is_refused(relay: str, github: FakeGitHub, headers: dict[str, str]) -> None:
    refused = httpx.post(f"{relay}/alerts", json=_webhook(_alert("loan-approval", "credit_score")), headers=headers)
    assert refused.status_code == 401
    assert "Bearer" in refused.json()["error"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert github.received.empty()
    assert httpx.get(f"{relay}/healthz").status_code == 200, "the kubelet's probe needs no token"


def test_the_first_of_several_models_firing_together_takes_the_one_dispatch(relay: str, github: FakeGitHub) -> None:
    answer = httpx.post(
        f"{relay}/alerts", json=_webhook(_alert("b-model", "x"), _alert("a-model", "y")), headers=AUTHORIZED
    )
    assert answer.json() == {"dispatched": ["a-model"], "cooling_down": ["b-model"]}
    assert _inputs(github.received.get(timeout=10))["model_name"] == "a-model"
    assert github.received.empty()


def test_bad_input_and_github_failures_get_clear_answers(relay: str, github: FakeGitHub) -> None:
    malformed = httpx.post(f"{relay}/alerts", content=b"{not json", headers=AUTHORIZED)
    assert malformed.status_code == 400
    assert "not JSON" in malformed.json()["error"]
    wrong_shape = httpx.post(f"{relay}/alerts", json={"alerts": "none"}, headers=AUTHORIZED)
    assert wrong_shape.status_code == 400
    assert httpx.get(f"{relay}/nowhere").status_code == 404
    too_big = httpx.post(f"{relay}/alerts", content=b" " * (2 << 20), headers=AUTHORIZED)
    assert too_big.status_code == 413
    assert "exceeds" in too_big.json()["error"]
    answer = post_and_close(int(relay.rsplit(":", 1)[1]), "/alerts", b" " * (2 << 20), headers=AUTHORIZED)
    assert answer.startswith(b"HTTP/1.1 413 "), "the 413 reaches a client that sends all and closes, never a reset"

    github.status = 422
    failed = httpx.post(f"{relay}/alerts", json=_webhook(_alert("loan-approval", "credit_score")), headers=AUTHORIZED)
    assert failed.status_code == 502, "Alertmanager retries a 5xx"
    assert "answered 422" in failed.json()["error"]
    github.received.get(timeout=10)
    github.status = 204
    retried = httpx.post(f"{relay}/alerts", json=_webhook(_alert("loan-approval", "credit_score")), headers=AUTHORIZED)
    assert retried.json()["dispatched"] == ["loan-approval"], "a failed dispatch starts no cool-down"


def test_alertmanager_routes_a_drift_alert_to_github_through_the_relay(
    relay: str, github: FakeGitHub, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "alertmanager is missing: make test installs it (tools/system-deps)"
    credentials = tmp_path / "relay-token"
    credentials.write_text(WEBHOOK_TOKEN)
    config = alertmanager_config(
        {"slackWebhookUrl": "http://127.0.0.1:9/slack", "pagerdutyRoutingKey": "key"},
        f"{relay}/alerts",
        str(credentials),
    )
    (retrain_route,) = [route for route in config["route"]["routes"] if route["receiver"] == "retrain"]
    retrain_route["group_wait"] = "1s"  # the deployed minute, shortened so the test does not wait for it
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    amtool = shutil.which("amtool")
    assert amtool
    check = subprocess.run(
        [amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr

    flags = [
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        "--cluster.listen-address=",
    ]
    with prometheus_daemon(binary, flags, tmp_path / "alertmanager.log", 30) as url:
        labels = {
            "alertname": "ModelDecisionDrift",
            "action": "retrain",
            "severity": "ticket",
            "model_name": "loan-approval",
        }
        latency = {"alertname": "ModelServiceHighLatencyP99", "severity": "page", "model_name": "loan-approval"}
        posted = httpx.post(
            f"{url}/api/v2/alerts",
            json=[
                {"labels": labels, "annotations": {"summary": "drift", "features": "credit_score "}},
                {"labels": latency},
            ],
        )
        assert posted.status_code == 200
        dispatch = github.received.get(timeout=60)
        inputs = _inputs(dispatch)
        assert inputs["model_name"] == "loan-approval"
        payload = json.loads(inputs["alerts"])
        assert payload["source"].startswith("http")
        # Only the alert labelled for retraining took this route; the latency page did not.
        assert [(a["alertname"], a["feature"]) for a in payload["alerts"]] == [("ModelDecisionDrift", "credit_score")]


def test_the_relay_refuses_bad_settings_naming_them_without_the_token() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLSTACK_")}
    env |= {
        "MLSTACK_RELAY_REPOSITORY": "not a repository",
        "MLSTACK_RELAY_GITHUB_TOKEN": TOKEN,
        "MLSTACK_RELAY_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlstack_service.retrain_relay"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "MLSTACK_RELAY_REPOSITORY: String should match pattern" in result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert WEBHOOK_TOKEN not in result.stdout + result.stderr
