"""`make bench`: the model service under load from wrk and ghz, beside a bare FastAPI endpoint and MLServer.

Each server is pinned to core 0 and the load generator to core 1 (taskset), so runs compare. Prints one table per
scenario (1-row requests at concurrency 1, 8 and 32; 64-row requests at concurrency 8; REST with binary tensors and
gRPC at 1 and 64 rows, concurrency 8) and the targets, and writes the headline figures to results.json, which the
preview prices a prediction with. `--protocols-only` measures only the service's three protocols.
"""

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlstack_service.inference import InferResult, output_tensors
from mlstack_service.package import load_package
from mlstack_service.proto import oip_v2_pb2
from mlstack_service.protocol import encode_infer_response, parse_infer_request
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings
from mlstack_service.synthetic import generate_applications

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_DIR = BENCH_DIR.parent
MODEL_NAME = "loan-approval"
SERVER_CORE, LOAD_CORE = "0", "1"
SCENARIOS = ((1, 1), (1, 8), (1, 32), (64, 8))  # (rows per request, concurrency)
PROTOCOL_SCENARIOS = ((1, 8), (64, 8))  # REST with binary tensors and gRPC
RESULTS = BENCH_DIR / "results.json"
PROTO = SERVICE_DIR / "mlstack_service" / "proto" / "oip_v2.proto"
# The names results.json gives each way of asking (contract with the preview's pricing, infra/preview/cost).
PROTOCOL_OF_SERVER = {"mlstack": "rest-json", "mlstack-binary": "rest-binary", "mlstack-grpc": "grpc"}
DRIFT_ROUNDS = 5
LATENCY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass
class Result:
    server: str
    rows: int
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rows_per_second(self) -> float:
        return self.requests_per_second * self.rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request_body(rows: int, seed: int) -> bytes:
    features, _ = generate_applications(rows, seed)
    return json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [rows, features.shape[1]], "datatype": "FP32", "data": features.tolist()}
            ]
        }
    ).encode()


def binary_request_body(rows: int, seed: int) -> tuple[bytes, int]:
    """The binary tensor extension's body (JSON header, then the FP32 bytes) and the header's length."""
    features, _ = generate_applications(rows, seed)
    raw = features.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [rows, features.shape[1]],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, len(header)


def grpc_request_body(rows: int, seed: int) -> bytes:
    """A serialized ModelInferRequest with the tensor in raw_input_contents, as Triton's gRPC client sends it."""
    features, _ = generate_applications(rows, seed)
    request = oip_v2_pb2.ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name="input", datatype="FP32", shape=list(features.shape))
    request.raw_input_contents.append(features.astype("<f4").tobytes())
    serialized: bytes = request.SerializeToString()
    return serialized


def wait_until(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {seconds} s")


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], ready_url: str, log: Path, cwd: Path | None = None
) -> Iterator[int]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *command], env=env, stdout=output, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            wait_until(ready_url)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def resident_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def run_wrk(
    url: str, body_file: Path, concurrency: int, seconds: int, header_length: int | None = None
) -> tuple[float, float, float, int]:
    command = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(BENCH_DIR / "post.lua"),
        url,
    ]
    output = subprocess.run(
        command,
        env={
            **os.environ,
            "BODY_FILE": str(body_file),
            **({"HEADER_LENGTH": str(header_length)} if header_length is not None else {}),
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): float(value) * LATENCY_UNITS[unit]
        for p, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return rps, percentiles[50] * 1000, percentiles[99] * 1000, errors


def measure(
    server: str, port: int, bodies: dict[int, Path], seconds: int, scenarios: tuple[tuple[int, int], ...] = SCENARIOS
) -> list[Result]:
    url = f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer"
    run_wrk(url, bodies[1], 8, 1)  # warm-up
    results = []
    for rows, concurrency in scenarios:
        rps, p50, p99, errors = run_wrk(url, bodies[rows], concurrency, seconds)
        results.append(Result(server, rows, concurrency, rps, p50, p99, errors))
    return results


def measure_binary(
    port: int, bodies: dict[int, tuple[Path, int]], seconds: int, scenarios: tuple[tuple[int, int], ...]
) -> list[Result]:
    url = f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer"
    run_wrk(url, bodies[1][0], 8, 1, bodies[1][1])  # warm-up
    results = []
    for rows, concurrency in scenarios:
        rps, p50, p99, errors = run_wrk(url, bodies[rows][0], concurrency, seconds, bodies[rows][1])
        results.append(Result("mlstack-binary", rows, concurrency, rps, p50, p99, errors))
    return results


def run_ghz(ghz: Path, port: int, body_file: Path, concurrency: int, seconds: int) -> tuple[float, float, float, int]:
    command = [
        "taskset",
        "-c",
        LOAD_CORE,
        str(ghz),
        "--insecure",
        "--proto",
        str(PROTO),
        "--call",
        "inference.GRPCInferenceService.ModelInfer",
        "--binary-file",
        str(body_file),
        "--concurrency",
        str(concurrency),
        "--connections",
        "1",
        "--duration",
        f"{seconds}s",
        "--format",
        "json",
        f"127.0.0.1:{port}",
    ]
    report = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    latencies = {entry["percentage"]: entry["latency"] for entry in report.get("latencyDistribution") or []}
    # When the duration ends ghz closes its connection under the calls still in flight (one per concurrent worker):
    # those are its own, not the server's, and are neither errors nor answered requests.
    errors = sum(
        count
        for message, count in (report.get("errorDistribution") or {}).items()
        if not message.endswith(("transport is closing", "the client connection is closing"))
    )
    answered = (report.get("statusCodeDistribution") or {}).get("OK", 0)
    return answered / (report["total"] / 1e9), latencies.get(50, 0) / 1e6, latencies.get(99, 0) / 1e6, errors


def measure_grpc(
    ghz: Path, port: int, bodies: dict[int, Path], seconds: int, scenarios: tuple[tuple[int, int], ...]
) -> list[Result]:
    run_ghz(ghz, port, bodies[1], 8, 1)  # warm-up
    results = []
    for rows, concurrency in scenarios:
        rps, p50, p99, errors = run_ghz(ghz, port, bodies[rows], concurrency, seconds)
        results.append(Result("mlstack-grpc", rows, concurrency, rps, p50, p99, errors))
    return results


def median_result(runs: list[Result]) -> Result:
    return sorted(runs, key=lambda run: run.requests_per_second)[len(runs) // 2]


def in_process_limit(
    package_dir: Path, bodies: dict[int, Path], seconds: float, header_length: dict[int, int] | None = None
) -> dict[int, float]:
    """Requests/s for parse + infer + encode in one process, no HTTP: the ceiling for each body.

    JSON bodies by default (the figure the 50% target has always been measured against); with `header_length`,
    binary tensor bodies, whose outputs are encoded as binary too.
    """
    model = OnnxModel(load_package(str(package_dir), package_dir), Settings())
    limits = {}
    for rows, path in bodies.items():
        body = path.read_bytes()
        length = header_length[rows] if header_length else None
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            parsed = parse_infer_request(body, model.metadata, 10_000, length)
            outputs = output_tensors(model.predict(parsed.request.rows), model.metadata, None)
            result = InferResult(outputs, "bench", None, len(parsed.request.rows))
            encode_infer_response(result, model.metadata, parsed.binary_outputs)
            count += 1
        limits[rows] = count / (time.perf_counter() - started)
    return limits


def report_protocols_only(
    seconds: int,
    results: list[Result],
    package_dir: Path,
    bodies: dict[int, Path],
    binary_bodies: dict[int, tuple[Path, int]],
) -> int:
    limits = in_process_limit(package_dir, {64: bodies[64]}, seconds=2)
    binary_limits = binary_in_process_limit(package_dir, {64: binary_bodies[64]})
    report(seconds, results, limits, [fastest_64_row_target(results, limits)], binary_limits)
    write_results(results)
    return 0


def binary_in_process_limit(package_dir: Path, bodies: dict[int, tuple[Path, int]]) -> dict[int, float]:
    paths = {rows: path for rows, (path, _) in bodies.items()}
    return in_process_limit(package_dir, paths, 2, {rows: length for rows, (_, length) in bodies.items()})


def mlserver_folder(work: Path, joblib_model: Path, port: int) -> Path:
    folder = work / "mlserver"
    (folder / MODEL_NAME).mkdir(parents=True)
    shutil.copy(joblib_model, folder / MODEL_NAME / "model.joblib")
    (folder / "settings.json").write_text(
        json.dumps({"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()})
    )
    (folder / MODEL_NAME / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1.0.0"},
            }
        )
    )
    return folder


def print_table(results: list[Result], limits: dict[int, float]) -> None:
    print(
        f"{'server':<14} {'rows':>4} {'conc':>4} {'req/s':>10} {'rows/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for result in results:
        print(
            f"{result.server:<14} {result.rows:>4} {result.concurrency:>4} {result.requests_per_second:>10.0f} "
            f"{result.rows_per_second:>11.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>6}"
        )
    for rows, rps in limits.items():
        print(f"{'in-process':<14} {rows:>4} {'-':>4} {rps:>10.0f} {rps * rows:>11.0f} {'-':>8} {'-':>8} {'-':>6}")


def pick(results: list[Result], server: str, rows: int, concurrency: int) -> Result:
    return next(r for r in results if (r.server, r.rows, r.concurrency) == (server, rows, concurrency))


def fastest_64_row_target(results: list[Result], limits: dict[int, float]) -> tuple[str, str, bool]:
    fastest = max(
        (pick(results, server, 64, 8) for server in PROTOCOL_OF_SERVER), key=lambda result: result.rows_per_second
    )
    ratio = fastest.rows_per_second / (limits[64] * 64)
    return (
        f"64 rows, c8: rows/s of the fastest protocol ({PROTOCOL_OF_SERVER[fastest.server]}) vs in-process >= 50%",
        f"{ratio:.0%}",
        ratio >= 0.5,
    )


def write_results(results: list[Result]) -> None:
    """The headline figures (contract with the preview): requests/s per core, the server pinned to one core."""
    machine = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                machine = line.split(":", 1)[1].strip()
                break
    headline = [
        {
            "protocol": protocol,
            "rows_per_request": rows,
            "requests_per_second_per_core": round(pick(results, server, rows, 8).requests_per_second, 1),
        }
        for server, protocol in PROTOCOL_OF_SERVER.items()
        for rows in (1, 64)
    ]
    document = {
        "measured_on": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "machine": machine,
        "cores": len(SERVER_CORE.split(",")),
        "headline": headline,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def check_targets(results: list[Result], limits: dict[int, float], rss_mib: float) -> list[tuple[str, str, bool]]:
    def pick(server: str, rows: int, concurrency: int) -> Result:
        return next(r for r in results if (r.server, r.rows, r.concurrency) == (server, rows, concurrency))

    ours, mlserver, bare = (pick(name, 1, 8) for name in ("mlstack", "mlserver", "bare-fastapi"))
    drift_cost = 1 - pick("drift-on", 1, 8).requests_per_second / pick("drift-off", 1, 8).requests_per_second
    drift_cost_64 = 1 - pick("drift-on", 64, 8).requests_per_second / pick("drift-off", 64, 8).requests_per_second
    ours_64 = pick("mlstack", 64, 8)
    mlserver_ratio = ours.requests_per_second / mlserver.requests_per_second
    bare_ratio = ours.requests_per_second / bare.requests_per_second
    paired = f"median of {DRIFT_ROUNDS} fresh pairs"
    in_process_ratio = ours_64.rows_per_second / (limits[64] * 64)
    return [
        ("1 row, c8: req/s vs MLServer >= 5x", f"{mlserver_ratio:.1f}x", mlserver_ratio >= 5),
        (
            "1 row, c8: p99 below MLServer's",
            f"{ours.p99_ms:.2f} vs {mlserver.p99_ms:.2f} ms",
            ours.p99_ms < mlserver.p99_ms,
        ),
        ("1 row, c8: req/s vs bare FastAPI >= 90%", f"{bare_ratio:.0%}", bare_ratio >= 0.9),
        ("1 row, c8: zero errors", str(ours.errors), ours.errors == 0),
        ("64 rows, c8, REST JSON: rows/s vs in-process", f"{in_process_ratio:.0%}", in_process_ratio >= 0.5),
        fastest_64_row_target(results, limits),
        ("resident memory after the run < 250 MiB", f"{rss_mib:.0f} MiB", rss_mib < 250),
        (f"drift tracking costs < 5% of req/s (1 row, c8; {paired})", f"{drift_cost:.1%}", drift_cost < 0.05),
        (f"drift tracking costs < 5% of req/s (64 rows, c8; {paired})", f"{drift_cost_64:.1%}", drift_cost_64 < 0.05),
    ]


def write_bodies(work: Path) -> tuple[dict[int, Path], dict[int, tuple[Path, int]], dict[int, Path]]:
    """Each scenario's request, as REST JSON, REST binary (with its header's length) and gRPC bodies."""
    bodies = {}
    binary_bodies = {}
    grpc_bodies = {}
    for rows in sorted({rows for rows, _ in SCENARIOS}):
        bodies[rows] = work / f"body-{rows}.json"
        bodies[rows].write_bytes(request_body(rows, seed=rows))
        binary, header_length = binary_request_body(rows, seed=rows)
        binary_bodies[rows] = (work / f"body-{rows}.bin", header_length)
        binary_bodies[rows][0].write_bytes(binary)
        grpc_bodies[rows] = work / f"body-{rows}.pb"
        grpc_bodies[rows].write_bytes(grpc_request_body(rows, seed=rows))
    return bodies, binary_bodies, grpc_bodies


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per scenario")
    parser.add_argument("--mlserver-python", type=Path, help="python of the venv with MLServer")
    parser.add_argument("--ghz", type=Path, required=True, help="the ghz gRPC load generator")
    parser.add_argument(
        "--protocols-only",
        action="store_true",
        help="only the service's REST JSON, REST binary and gRPC rows (no drift pairs, bare FastAPI or MLServer)",
    )
    args = parser.parse_args()
    if not args.protocols_only and args.mlserver_python is None:
        parser.error("--mlserver-python is needed unless --protocols-only")
    return args


def main() -> int:
    args = parse_arguments()
    package_dir = SERVICE_DIR / "example_model"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as scratch:
        work = Path(scratch)
        bodies, binary_bodies, grpc_bodies = write_bodies(work)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mlstack_service.train",
                "--out",
                str(work / "package"),
                "--joblib",
                str(work / "model.joblib"),
            ],
            check=True,
            capture_output=True,
        )
        base_env = {key: value for key, value in os.environ.items() if not key.startswith("MLSTACK_")}

        port, grpc_port = free_port(), free_port()
        env = {
            **base_env,
            "MLSTACK_HOST": "127.0.0.1",
            "MLSTACK_PORT": str(port),
            "MLSTACK_INTERNAL_PORT": str(free_port()),
            "MLSTACK_GRPC_PORT": str(grpc_port),
            "MLSTACK_MODEL_URI": str(package_dir),
        }
        with running(
            [sys.executable, "-m", "mlstack_service"],
            env,
            f"http://127.0.0.1:{port}/v2/health/ready",
            work / "mlstack.log",
        ) as pid:
            scenarios = PROTOCOL_SCENARIOS if args.protocols_only else SCENARIOS
            results += measure("mlstack", port, bodies, args.seconds, scenarios)
            results += measure_binary(port, binary_bodies, args.seconds, PROTOCOL_SCENARIOS)
            results += measure_grpc(args.ghz, grpc_port, grpc_bodies, args.seconds, PROTOCOL_SCENARIOS)
            rss_mib = resident_mib(pid)

        if args.protocols_only:
            return report_protocols_only(args.seconds, results, package_dir, bodies, binary_bodies)

        # Drift tracking's cost is a few percent, the size of the differences between two processes of the same
        # server (memory layout, hash seeds), so each round starts a fresh pair, drift on and off side by side,
        # which take turns under load; each figure is the median of DRIFT_ROUNDS rounds.
        drift_rounds: dict[str, dict[int, list[Result]]] = {"drift-on": {}, "drift-off": {}}
        for round_number in range(DRIFT_ROUNDS):
            with contextlib.ExitStack() as servers:
                ports = {}
                for server, enabled in (("drift-on", "true"), ("drift-off", "false")):
                    ports[server] = free_port()
                    server_env = {
                        **env,
                        "MLSTACK_PORT": str(ports[server]),
                        "MLSTACK_INTERNAL_PORT": str(free_port()),
                        "MLSTACK_GRPC_PORT": str(free_port()),
                        "MLSTACK_DRIFT_ENABLED": enabled,
                    }
                    ready = f"http://127.0.0.1:{ports[server]}/v2/health/ready"
                    log = work / f"{server}-{round_number}.log"
                    servers.enter_context(running([sys.executable, "-m", "mlstack_service"], server_env, ready, log))
                for rows in (1, 64):
                    order = list(ports.items()) if round_number % 2 == 0 else list(reversed(ports.items()))
                    for server, port_of_server in order:
                        (result,) = measure(server, port_of_server, bodies, args.seconds, ((rows, 8),))
                        drift_rounds[server].setdefault(rows, []).append(result)
        results += [median_result(runs) for by_rows in drift_rounds.values() for runs in by_rows.values()]

        port = free_port()
        env = {**base_env, "BARE_MODEL_PATH": str(package_dir / "model.onnx")}
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_endpoint:app",
            "--port",
            str(port),
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--app-dir",
            str(BENCH_DIR),
        ]
        probe = f"http://127.0.0.1:{port}/docs"
        with running(command, env, probe, work / "bare.log"):
            results += measure("bare-fastapi", port, bodies, args.seconds)

        port = free_port()
        folder = mlserver_folder(work, work / "model.joblib", port)
        command = [str(args.mlserver_python), "-m", "mlserver.cli.main", "start", str(folder)]
        mlserver_bin = args.mlserver_python.parent / "mlserver"
        if mlserver_bin.exists():
            command = [str(mlserver_bin), "start", str(folder)]
        with running(command, base_env, f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", work / "mlserver.log"):
            results += measure("mlserver", port, bodies, args.seconds)

        limits = in_process_limit(package_dir, bodies, seconds=2)
        binary_limits = binary_in_process_limit(package_dir, binary_bodies)

    report(args.seconds, results, limits, check_targets(results, limits, rss_mib), binary_limits)
    write_results(results)
    return 0


def report(
    seconds: int,
    results: list[Result],
    limits: dict[int, float],
    targets: list[tuple[str, str, bool]],
    binary_limits: dict[int, float],
) -> None:
    print(
        f"\nmlstack model service benchmark ({seconds} s per scenario; "
        f"servers on core {SERVER_CORE}, wrk and ghz on core {LOAD_CORE}; load average {os.getloadavg()[0]:.2f})\n"
    )
    print_table(results, limits)
    for rows, rps in binary_limits.items():
        print(f"{'in-proc binary':<14} {rows:>4} {'-':>4} {rps:>10.0f} {rps * rows:>11.0f} {'-':>8} {'-':>8} {'-':>6}")
    print("\nTargets:")
    for name, value, met in targets:
        print(f"  [{'met' if met else 'MISSED'}] {name}: {value}")
    print(f"\nHeadline figures written to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
