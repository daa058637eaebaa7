"""`make bench`: the model service under load from wrk, beside a bare FastAPI endpoint and MLServer.

Each server is pinned to core 0 and wrk to core 1 (taskset), so runs compare. Prints one table per
scenario (1-row requests at concurrency 1, 8 and 32; 64-row requests at concurrency 8) and the targets.
"""

import argparse
import contextlib
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

from mlstack_service.package import load_package
from mlstack_service.protocol import encode_infer_response, parse_infer_request
from mlstack_service.runtime import OnnxModel
from mlstack_service.settings import Settings
from mlstack_service.synthetic import generate_applications

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_DIR = BENCH_DIR.parent
MODEL_NAME = "loan-approval"
SERVER_CORE, LOAD_CORE = "0", "1"
SCENARIOS = ((1, 1), (1, 8), (1, 32), (64, 8))  # (rows per request, concurrency)
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


def run_wrk(url: str, body_file: Path, concurrency: int, seconds: int) -> tuple[float, float, float, int]:
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
        command, env={**os.environ, "BODY_FILE": str(body_file)}, capture_output=True, text=True, check=True
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


def median_result(runs: list[Result]) -> Result:
    return sorted(runs, key=lambda run: run.requests_per_second)[len(runs) // 2]


def in_process_limit(package_dir: Path, bodies: dict[int, Path], seconds: float) -> dict[int, float]:
    """Requests/s for parse + infer + encode in one process, no HTTP: the ceiling for each body."""
    model = OnnxModel(load_package(str(package_dir), package_dir), Settings())
    limits = {}
    for rows, path in bodies.items():
        body = path.read_bytes()
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            request = parse_infer_request(body, model.metadata, 10_000)
            encode_infer_response(model.predict(request.rows), model.metadata, "bench", None)
            count += 1
        limits[rows] = count / (time.perf_counter() - started)
    return limits


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
        f"{'server':<12} {'rows':>4} {'conc':>4} {'req/s':>10} {'rows/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    )
    for result in results:
        print(
            f"{result.server:<12} {result.rows:>4} {result.concurrency:>4} {result.requests_per_second:>10.0f} "
            f"{result.rows_per_second:>11.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>6}"
        )
    for rows, rps in limits.items():
        print(f"{'in-process':<12} {rows:>4} {'-':>4} {rps:>10.0f} {rps * rows:>11.0f} {'-':>8} {'-':>8} {'-':>6}")


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
        ("64 rows, c8: rows/s vs in-process >= 50%", f"{in_process_ratio:.0%}", in_process_ratio >= 0.5),
        ("resident memory after the run < 250 MiB", f"{rss_mib:.0f} MiB", rss_mib < 250),
        (f"drift tracking costs < 5% of req/s (1 row, c8; {paired})", f"{drift_cost:.1%}", drift_cost < 0.05),
        (f"drift tracking costs < 5% of req/s (64 rows, c8; {paired})", f"{drift_cost_64:.1%}", drift_cost_64 < 0.05),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per scenario")
    parser.add_argument("--mlserver-python", type=Path, required=True, help="python of the venv with MLServer")
    args = parser.parse_args()
    package_dir = SERVICE_DIR / "example_model"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mlstack-bench-") as scratch:
        work = Path(scratch)
        bodies = {}
        for rows in sorted({rows for rows, _ in SCENARIOS}):
            bodies[rows] = work / f"body-{rows}.json"
            bodies[rows].write_bytes(request_body(rows, seed=rows))
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

        port = free_port()
        env = {
            **base_env,
            "MLSTACK_HOST": "127.0.0.1",
            "MLSTACK_PORT": str(port),
            "MLSTACK_MODEL_URI": str(package_dir),
        }
        with running(
            [sys.executable, "-m", "mlstack_service"],
            env,
            f"http://127.0.0.1:{port}/v2/health/ready",
            work / "mlstack.log",
        ) as pid:
            results += measure("mlstack", port, bodies, args.seconds)
            rss_mib = resident_mib(pid)

        # Drift tracking's cost is a few percent, the size of the differences between two processes of the same
        # server (memory layout, hash seeds), so each round starts a fresh pair, drift on and off side by side,
        # which take turns under load; each figure is the median of DRIFT_ROUNDS rounds.
        drift_rounds: dict[str, dict[int, list[Result]]] = {"drift-on": {}, "drift-off": {}}
        for round_number in range(DRIFT_ROUNDS):
            with contextlib.ExitStack() as servers:
                ports = {}
                for server, enabled in (("drift-on", "true"), ("drift-off", "false")):
                    ports[server] = free_port()
                    server_env = {**env, "MLSTACK_PORT": str(ports[server]), "MLSTACK_DRIFT_ENABLED": enabled}
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

    print(
        f"\nmlstack model service benchmark ({args.seconds} s per scenario; "
        f"servers on core {SERVER_CORE}, wrk on core {LOAD_CORE})\n"
    )
    print_table(results, limits)
    print("\nTargets:")
    for name, value, met in check_targets(results, limits, rss_mib):
        print(f"  [{'met' if met else 'MISSED'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
