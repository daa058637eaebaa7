"""Service settings: MLSTACK_* environment variables, typed and checked at start-up."""

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_URI = str(Path(__file__).resolve().parents[1] / "example_model")
UNKNOWN_BUILD = "unknown"
# s3://bucket/prefix/, or file:///folder/ where no container may reach S3 (the dev host: local_objects.py).
S3_PREFIX_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|file:///[A-Za-z0-9_.-]+)/([A-Za-z0-9!_.*'()/-]+/)?$"
S3_OBJECT_PATTERN = (
    r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]|file:///[A-Za-z0-9_.-]+)/[A-Za-z0-9!_.*'()/-]*[A-Za-z0-9!_.*'()-]$"
)


class Settings(BaseSettings):
    """Every knob of the server. `MLSTACK_PORT=9000` sets `port`, and so on."""

    model_config = SettingsConfigDict(env_prefix="MLSTACK_", extra="ignore", frozen=True)

    model_uri: str = Field(DEFAULT_MODEL_URI, description="model package: a local folder or an s3:// prefix")
    model_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="the package's pinned sha256 (package.package_sha256); a package that differs is refused",
    )
    model_cache_dir: Path = Field(Path("/tmp/mlstack-models"), description="where s3:// packages are downloaded")
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535, description="the public port: OIP v2 inference, model and health routes")
    internal_port: int = Field(
        9090,
        ge=1,
        le=65535,
        description="the in-cluster port: /metrics, the feedback route and health; never exposed by the load balancer",
    )
    grpc_port: int = Field(
        8081, ge=1, le=65535, description="OIP v2 over gRPC and grpc.health.v1 (Kubernetes' gRPC probes)"
    )
    api_keys_file: Path | None = Field(
        None,
        description="'<client> <sha256 of key>' lines (auth.py); set: infer and model routes need a key (401 without)",
    )
    feedback_keys_file: Path | None = Field(
        None, description="keys for the feedback route; unset: the API keys (when set) are also accepted there"
    )
    auth_required: bool = Field(False, description="refuse to start without MLSTACK_API_KEYS_FILE (prod sets it)")
    rate_limit_per_second: float = Field(
        0.0, ge=0, description="requests a second per client (its key's name, or its address without keys); 0: off"
    )
    rate_limit_burst: int = Field(50, ge=1, description="requests a client may send at once before the rate applies")
    device: Literal["cpu", "cuda"] = Field("cpu", description="cuda runs the model on the CUDA execution provider")
    cuda_device_id: int = Field(0, ge=0)
    intra_op_threads: int = Field(
        1, ge=0, description="onnxruntime intra-op threads; 1 per served core, 0 = ort default"
    )
    inline_rows: int = Field(
        256, ge=0, description="requests up to this many rows run inference on the event loop; larger ones in a thread"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger request bodies get 413")
    max_rows: int = Field(10_000, ge=1, description="rows per request above this get 413")
    grace_period_seconds: float = Field(25.0, ge=0, description="after SIGTERM, how long in-flight requests may take")
    drain_seconds: float = Field(
        0.0, ge=0, description="after SIGTERM, how long to keep serving with readiness false before closing"
    )
    drift_enabled: bool = Field(True, description="track data, prediction and concept drift")
    drift_window: int = Field(10_000, ge=100, le=1_000_000, description="rows in the sliding drift window")
    drift_min_samples: int = Field(
        1_000,
        ge=1,
        description="rows the drift window must hold before drift statistics are exported (and can alert)",
    )
    drift_psi_threshold: float = Field(
        0.2, gt=0, description="PSI shown beside the verdicts as an effect size (dashboards); verdicts come from tests"
    )
    drift_false_alarm_days: float = Field(
        90.0, gt=0, le=3650, description="at most one false drift alarm per this many days of no-drift traffic"
    )
    drift_hold_minutes: float = Field(
        60.0, gt=0, le=1440, description="how long a verdict must hold before its alert fires (the look interval)"
    )
    drift_max_accuracy_drop: float = Field(
        0.03, gt=0, lt=1, description="a fall of the estimated accuracy smaller than this never counts as drift"
    )
    drift_source_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="share of the drift window one client may fill per drift_slice_seconds; 1: no limit",
    )
    drift_slice_seconds: float = Field(60.0, gt=0, description="the time slice of drift_source_share")
    drift_refresh_seconds: float = Field(10.0, gt=0, description="how often drift statistics are recomputed")
    feedback_max_pending: int = Field(10_000, ge=100, description="predictions kept awaiting a label")
    feedback_max_pending_rows: int = Field(
        100_000, ge=1_000, description="rows of scores kept for predictions awaiting a label"
    )
    feedback_ttl_seconds: float = Field(86_400.0, gt=0, description="how long a prediction id accepts a label")
    feedback_window: int = Field(1_000, ge=10, description="labelled rows in the rolling accuracy and log loss")
    prediction_id_key_file: Path | None = Field(
        None,
        description="the MAC key prediction ids are signed with, shared by the replicas (prediction_ids.py); unset: a "
        "key per process, so only the process that served a prediction accepts its feedback",
    )
    prediction_log_uri: str | None = Field(
        None,
        pattern=S3_PREFIX_PATTERN,
        description="s3://bucket/prefix/ the sampled prediction log is written under (prediction_log.py); unset: off",
    )
    prediction_log_sample_rate: float = Field(1.0, ge=0, le=1, description="share of predictions logged")
    prediction_log_features: bool = Field(
        True,
        description="store each logged prediction's features; false: ids, times and scores only (realized accuracy "
        "still works, but the label join has no rows to retrain on)",
    )
    prediction_log_batch_rows: int = Field(
        5_000, ge=1, le=1_000_000, description="rows per log object: a full batch is written at once"
    )
    prediction_log_flush_seconds: float = Field(
        60.0, gt=0, le=3600, description="a partial batch is written after this long (and on SIGTERM)"
    )
    prediction_log_max_rows_per_second: float = Field(
        500.0, gt=0, description="rows a second the log takes at most; more are counted as dropped, not logged"
    )
    prediction_log_max_buffered_rows: int = Field(
        50_000, ge=1, description="rows held in memory awaiting upload; beyond them rows are dropped and counted"
    )
    feedback_uri: str | None = Field(
        None,
        pattern=S3_PREFIX_PATTERN,
        description="s3://bucket/prefix/ every replica writes labels to (feedback_store.py); unset: labels stay in "
        "this process's memory only",
    )
    realized_summary_uri: str | None = Field(
        None,
        pattern=S3_OBJECT_PATTERN,
        description="s3://bucket/key of the label join's summary, re-exported as mlstack_realized_* metrics",
    )
    realized_refresh_seconds: float = Field(300.0, gt=0, description="how often the label join's summary is read")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_payloads: bool = Field(False, description="log the first KiB of each request body (off: payloads are data)")
    build_commit: str = Field(
        UNKNOWN_BUILD,
        pattern=r"^([0-9a-f]{40}|unknown)$",
        description="the git commit the image was built from (the Dockerfile's MLSTACK_BUILD_COMMIT build argument)",
    )

    @field_validator("drift_min_samples")
    @classmethod
    def _min_samples_fit_the_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("drift_window")
        if window is not None and value > window:
            raise ValueError(f"must be at most MLSTACK_DRIFT_WINDOW ({window}), or drift would never be reported")
        return value

    @model_validator(mode="after")
    def _ports_differ_and_keys_are_given_when_required(self) -> "Settings":
        if self.internal_port == self.port:
            raise ValueError("MLSTACK_INTERNAL_PORT must differ from MLSTACK_PORT: /metrics and feedback stay internal")
        if self.grpc_port in (self.port, self.internal_port):
            raise ValueError("MLSTACK_GRPC_PORT must differ from MLSTACK_PORT and MLSTACK_INTERNAL_PORT")
        if self.auth_required and self.api_keys_file is None:
            raise ValueError("MLSTACK_AUTH_REQUIRED is true but MLSTACK_API_KEYS_FILE is not set")
        return self

    @field_validator(
        "model_sha256",
        "api_keys_file",
        "feedback_keys_file",
        "prediction_id_key_file",
        "prediction_log_uri",
        "feedback_uri",
        "realized_summary_uri",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("build_commit", mode="before")
    @classmethod
    def _unset_build_is_unknown(cls, value: object) -> object:
        # An image built without the build argument has the variable set, but empty.
        return UNKNOWN_BUILD if value == "" else value


def describe_invalid_settings(error: ValidationError, prefix: str, *, show_values: bool) -> str:
    """One line naming each bad variable (`MLSTACK_PORT='x': ...`); values are left out where one may be a secret.

    A rule across variables (no location) names its variables in its own message.
    """
    return "; ".join(
        (
            f"{prefix}{'_'.join(str(part) for part in detail['loc']).upper()}"
            + (f"={detail['input']!r}" if show_values else "")
            + f": {detail['msg']}"
        )
        if detail["loc"]
        else str(detail["msg"]).removeprefix("Value error, ")
        for detail in error.errors()
    )
