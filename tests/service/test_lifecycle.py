"""Start-up, shutdown and failure: what Kubernetes and an on-call engineer see of the process."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mlstack_service.package import package_sha256
from tests.service.conftest import (
    STARTUP_SECONDS,
    MotoS3,
    ServerProcess,
    free_port,
    infer_body,
    start_server,
    wait_for,
)
from tests.service.models import (
    EXAMPLE_PACKAGE,
    copy_example,
    corrupt,
    failing_model_bytes,
    package_with_model,
    slow_model_bytes,
)

DOCKERFILE = Path(__file__).resolve().parents[2] / "service" / "Dockerfile"


def _refusal(server: ServerProcess) -> dict[str, Any]:
    """The one line a server that refuses to start prints, after checking it exited 1 and printed one line."""
    assert server.process.wait(timeout=60) == 1
    lines = server.log_path.read_text().splitlines()
    assert len(lines) == 1, f"expected one log line, got:\n{server.log_path.read_text()}"
    line: dict[str, Any] = json.loads(lines[0])
    assert (line["level"], line["event"]) == ("error", "refusing to start")
    return line


def _in_flight(server: ServerProcess) -> float:
    for family in text_string_to_metric_families(server.metrics_text()):
        for sample in family.samples:
            if sample.name == "mlstack_requests_in_flight":
                return float(sample.value)
    return 0.0


def test_sigterm_drains_and_the_slow_request_still_gets_200(tmp_path: Path) -> None:
    # 400 layers load in seconds even on a busy machine (2000 took over the start-up minute); 200 rows keep the
    # request in flight long enough.
    package = package_with_model(tmp_path / "slow", slow_model_bytes(layers=400))
    # Rows past inline_rows run beside the event loop, so the server can answer probes meanwhile.
    server = start_server(
        tmp_path, model_uri=str(package), inline_rows="0", drain_seconds="1", grace_period_seconds="30"
    )
    result: dict[str, Any] = {}

    def slow_request() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post("/v2/models/loan-approval/infer", json=infer_body(200))
            result.update(status=response.status_code, body=response.json())

    worker = threading.Thread(target=slow_request)
    worker.start()
    wait_for(lambda: _in_flight(server) >= 2, 30, "the slow request to be in flight")  # it, and this scrape
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 503, 10, "readiness to turn false")
    assert server.client.get("/v2/health/ready").json() == {"ready": False, "error": "shutting down"}
    worker.join(timeout=60)
    assert result["status"] == 200
    assert len(result["body"]["outputs"][0]["data"]) == 200
    assert server.process.wait(timeout=60) == 0
    events = [line.get("event") for line in server.log_lines()]
    assert events.index("draining") < events.index("stopped")


def test_a_failure_inside_the_model_is_a_500_with_an_error_id_that_is_logged(tmp_path: Path) -> None:
    package = package_with_model(tmp_path / "failing", failing_model_bytes())
    server = start_server(tmp_path, model_uri=str(package))
    try:
        healthy = server.client.post("/v2/models/loan-approval/infer", json=infer_body(2))
        assert healthy.status_code == 200
        body = infer_body(1)
        body["inputs"][0]["data"][0][0] = 500.0  # an age past the model's lookup table
        response = server.client.post("/v2/models/loan-approval/infer", json=body)
        assert response.status_code == 500
        error = response.json()["error"]
        error_id = re.search(r"error id ([0-9a-f]{32})", error)
        assert error_id, error
        wait_for(lambda: server.logged(error_id=error_id.group(1)), 5, "the failure's log line")
        (logged,) = server.logged(error_id=error_id.group(1))
        assert logged["level"] == "error"
        assert "Gather" in logged["exception"]
        # The server is still healthy after the failure.
        assert server.client.post("/v2/models/loan-approval/infer", json=infer_body(2)).status_code == 200
    finally:
        server.stop()


def test_a_corrupt_model_file_refuses_to_start(tmp_path: Path) -> None:
    package = copy_example(tmp_path / "corrupt")
    corrupt(package)
    line = _refusal(start_server(tmp_path, wait=False, model_uri=str(package)))
    assert "sha256 of model.onnx is" in line["reason"]
    assert "does not belong to this package" in line["reason"]


def test_the_package_digest_is_what_sha256sum_of_the_three_files_prints() -> None:
    listing = subprocess.run(
        ["sha256sum", "model.onnx", "metadata.json", "reference_profile.json"],
        cwd=EXAMPLE_PACKAGE, capture_output=True, check=True,
    ).stdout  # fmt: skip
    digest = subprocess.run(["sha256sum"], input=listing, capture_output=True, check=True).stdout.split()[0]
    assert package_sha256(EXAMPLE_PACKAGE) == digest.decode()


def test_a_package_that_differs_from_the_stacks_pin_refuses_to_start(tmp_path: Path) -> None:
    """The model and its metadata still agree: only the pin, set by the stack and not by whoever wrote the package,
    tells that the reference profile was swapped (here: one that would hide any drift)."""
    pinned = package_sha256(EXAMPLE_PACKAGE)
    package = copy_example(tmp_path / "swapped")
    profile = json.loads((package / "reference_profile.json").read_text())
    profile["rows"] += 1
    (package / "reference_profile.json").write_text(json.dumps(profile))
    line = _refusal(start_server(tmp_path, wait=False, model_uri=str(package), model_sha256=pinned))
    assert line["reason"] == (
        f"model package {package}: its sha256 is {package_sha256(package)}, but MLSTACK_MODEL_SHA256 pins {pinned}; "
        "refusing a package the stack did not pin"
    )


def test_a_missing_model_file_refuses_to_start(tmp_path: Path) -> None:
    package = copy_example(tmp_path / "incomplete")
    (package / "model.onnx").unlink()
    assert _refusal(start_server(tmp_path, wait=False, model_uri=str(package)))["reason"].endswith("missing model.onnx")


def test_a_missing_package_refuses_to_start(tmp_path: Path) -> None:
    line = _refusal(start_server(tmp_path, wait=False, model_uri=str(tmp_path / "nowhere")))
    assert line["reason"] == f"model package {tmp_path / 'nowhere'}: no such folder"


def test_cuda_without_a_gpu_refuses_to_start_with_the_reason(tmp_path: Path) -> None:
    line = _refusal(start_server(tmp_path, wait=False, device="cuda"))
    assert "MLSTACK_DEVICE=cuda but onnxruntime offers only" in line["reason"]
    assert "CPUExecutionProvider" in line["reason"]


def test_an_invalid_setting_refuses_to_start_naming_the_variable(tmp_path: Path) -> None:
    line = _refusal(start_server(tmp_path, wait=False, max_rows="lots"))
    assert "MLSTACK_MAX_ROWS='lots'" in line["reason"]


def _upload(moto_s3: MotoS3, bucket: str, prefix: str, package: Path) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket=bucket)
    for path in package.iterdir():
        s3.upload_file(str(path), bucket, f"{prefix}/{path.name}")


def test_the_model_loads_from_s3(tmp_path: Path, moto_s3: MotoS3) -> None:
    _upload(moto_s3, "models", "loan-approval/1.0.0", EXAMPLE_PACKAGE)
    server = start_server(
        tmp_path,
        extra_env=moto_s3.env,
        model_uri="s3://models/loan-approval/1.0.0/",
        model_cache_dir=str(tmp_path / "cache"),
        model_sha256=package_sha256(EXAMPLE_PACKAGE),  # the pin matches: the package is served
    )
    try:
        assert server.client.post("/v2/models/loan-approval/infer", json=infer_body(3)).status_code == 200
        (loaded,) = server.logged(event="model loaded")
        assert loaded["uri"] == "s3://models/loan-approval/1.0.0/"
        assert loaded["pinned"] is True
        assert (tmp_path / "cache" / "models" / "loan-approval" / "1.0.0" / "model.onnx").is_file()
    finally:
        server.stop()


def test_a_missing_s3_object_refuses_to_start(tmp_path: Path, moto_s3: MotoS3) -> None:
    _upload(moto_s3, "partial-models", "loan-approval/2.0.0", EXAMPLE_PACKAGE)
    moto_s3.client().delete_object(Bucket="partial-models", Key="loan-approval/2.0.0/model.onnx")
    server = start_server(
        tmp_path,
        wait=False,
        extra_env=moto_s3.env,
        model_uri="s3://partial-models/loan-approval/2.0.0",
        model_cache_dir=str(tmp_path / "cache"),
    )
    line = _refusal(server)
    assert "cannot read s3://partial-models/loan-approval/2.0.0/model.onnx" in line["reason"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by its name (the word after AS)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in _dockerfile_instructions():
        if keyword == "FROM":
            current = []
            stages[rest.split()[-1]] = current
        current.append((keyword, rest))
    return stages


def test_dockerfile_cmd_starts_the_server_and_its_healthcheck_passes(tmp_path: Path) -> None:
    final = _final_stage()
    # tini as PID 1, from the first instruction on: it forwards SIGTERM to the server and reaps children.
    (entrypoint,) = [json.loads(rest) for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert entrypoint == ["/usr/bin/tini", "--"]
    for base in ("base-cpu", "base-gpu"):
        installs = [rest for keyword, rest in _stages()[base] if keyword == "RUN" and "apt-get install" in rest]
        assert any(re.search(r"\btini\b", rest) for rest in installs), f"{base} must install tini"
    command = json.loads([rest for keyword, rest in final if keyword == "CMD"][-1])
    server = start_server(tmp_path, command=command)
    try:
        healthcheck = [rest for keyword, rest in final if keyword == "HEALTHCHECK"][-1]
        probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        env = {
            **os.environ,
            "MLSTACK_PORT": str(server.port),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        assert subprocess.run(probe, env=env, check=False, timeout=10).returncode == 0
        dead_port = {**env, "MLSTACK_PORT": str(free_port())}
        assert subprocess.run(probe, env=dead_port, check=False, timeout=10, capture_output=True).returncode != 0
    finally:
        assert server.stop() == 0


def test_dockerfile_pins_bases_by_digest_and_runs_unprivileged() -> None:
    instructions = _dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "ARG" and rest.split("=")[0].endswith("_BASE")]
    assert len(bases) == 2
    assert all(re.search(r"@sha256:[0-9a-f]{64}$", base) for base in bases), bases
    final = _final_stage()
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users
    assert not users[-1].startswith(("0", "root"))
    assert ("EXPOSE", "8080 8081") in final  # REST, gRPC; never the internal port
    final_text = " ".join(rest for _, rest in final)
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", final_text)
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages[-1].startswith("base-${VARIANT}")


def test_dockerfile_builds_noninteractively_and_bakes_in_the_build_commit() -> None:
    for name, stage in _stages().items():
        apt_runs = [index for index, (keyword, rest) in enumerate(stage) if keyword == "RUN" and "apt-get" in rest]
        if not apt_runs:
            continue
        frontend = [index for index, (keyword, rest) in enumerate(stage) if rest == "DEBIAN_FRONTEND=noninteractive"]
        assert frontend, f"{name} runs apt-get without DEBIAN_FRONTEND=noninteractive"
        assert frontend[0] < apt_runs[0], name
    final = _final_stage()
    build_arg = final.index(("ARG", "MLSTACK_BUILD_COMMIT=unknown"))
    assert final.index(("ENV", "MLSTACK_BUILD_COMMIT=${MLSTACK_BUILD_COMMIT}")) > build_arg


def test_sigterm_while_the_model_loads_stops_the_process_at_once_with_status_0(tmp_path: Path) -> None:
    # An S3 endpoint that accepts the connection and never answers: the model download hangs in a socket read.
    with socket.socket() as silent_s3:
        silent_s3.bind(("127.0.0.1", 0))
        silent_s3.listen()
        silent_s3.settimeout(STARTUP_SECONDS)
        server = start_server(
            tmp_path,
            wait=False,
            extra_env={
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent_s3.getsockname()[1]}",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
            },
            model_uri="s3://models/loan-approval/1.0.0/",
            model_cache_dir=str(tmp_path / "cache"),
        )
        connection, _ = silent_s3.accept()  # from here the server is inside the model load
        with connection:
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0
            # Far below botocore's 60 s read timeout: the signal, not the download, ended the wait.
            assert time.monotonic() - signalled < 10
    (stopped,) = server.logged(event="stopped before ready")
    assert stopped["signal"] == "SIGTERM"
    assert not server.logged(event="ready")


def test_server_metadata_names_the_build_commit(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    server = start_server(tmp_path, build_commit=commit)
    try:
        metadata = server.client.get("/v2").json()
        assert metadata["build"] == {"commit": commit}
        assert metadata["name"] == "mlstack-service"
    finally:
        assert server.stop() == 0
    unset = start_server(tmp_path, build_commit="")
    try:
        assert unset.client.get("/v2").json()["build"] == {"commit": "unknown"}
    finally:
        assert unset.stop() == 0
    line = _refusal(start_server(tmp_path, wait=False, build_commit="main"))
    assert "MLSTACK_BUILD_COMMIT='main'" in line["reason"]


def test_fuzzing_the_openapi_document_finds_no_server_error(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "20261128",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts, result.stdout[-2000:]
    assert int(counts.group(1)) == int(counts.group(2)) >= 100
    wait_for(lambda: len(server.logged(event="request")) > int(counts.group(1)), 5, "the fuzzed requests' log lines")
    statuses = {line["status"] for line in server.logged(event="request")}
    assert 200 in statuses
    assert not [status for status in statuses if status >= 500]
