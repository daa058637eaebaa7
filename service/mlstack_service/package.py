"""Model packages: a folder (local or s3://) holding the ONNX model, its metadata and a reference profile.

model.onnx              the model
metadata.json           name, version, features (names, types, valid ranges), sha256 of model.onnx, training summary
reference_profile.json  per-feature kind, bins and proportions of the training data, and the training predictions'
                        profile (score bins, approval rate, estimated accuracy); format 2 (format 1, without kinds,
                        still loads: its features count as continuous)

The package's own digest (`package_sha256`) covers all three files, so the pin a stack sets (MLSTACK_MODEL_SHA256)
holds the metadata and the reference profile too, not only the model: `metadata.json`'s hash of model.onnx is written
by whoever wrote the package, so it proves integrity, not origin. It is what this prints, run in the package folder:

    sha256sum model.onnx metadata.json reference_profile.json | sha256sum
"""

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "reference_profile.json"
PACKAGE_FILES = (MODEL_FILE, METADATA_FILE, PROFILE_FILE)
HASH_CHUNK_BYTES = 1 << 20
PROFILE_FORMAT = 2
ModelT = TypeVar("ModelT", bound=BaseModel)
# continuous: ordered values with few ties (KS); discrete: ordered whole numbers such as counts or terms (exact-value
# bins, chi-square); categorical: codes without an order (exact-value bins, chi-square).
FeatureKind = Literal["continuous", "discrete", "categorical"]


class PackageError(Exception):
    """A model package that cannot be served: missing, incomplete, corrupt or inconsistent."""


class Feature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["float"]
    min: float
    max: float
    description: str = ""
    # Declared here, the kind wins over the rule training infers it by (train.py's infer_kind).
    kind: FeatureKind | None = None


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    version: str = Field(min_length=1, max_length=64)
    model_file: str = MODEL_FILE
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    label_output: str
    probabilities_output: str
    class_names: list[str] = Field(min_length=2)
    features: list[Feature] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]


class FeatureProfile(BaseModel):
    """Bins closed on the right, Prometheus-style: (-inf, e0], (e0, e1], ..., (e_last, +inf): one more proportion
    than edges. Format 1 stored the outer edges too (as many edges as proportions + 1); they are dropped on load."""

    kind: FeatureKind = "continuous"
    bin_edges: list[float]
    proportions: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_more_bin_than_edges(self) -> "FeatureProfile":
        if len(self.bin_edges) == len(self.proportions) + 1:  # format 1: outer edges included
            object.__setattr__(self, "bin_edges", self.bin_edges[1:-1])
        if len(self.proportions) != len(self.bin_edges) + 1:
            raise ValueError(f"{len(self.proportions)} proportions need {len(self.proportions) - 1} inner bin edges")
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError("bin edges must increase")
        return self

    @property
    def test(self) -> Literal["ks", "chi2"]:
        return "ks" if self.kind == "continuous" else "chi2"


class PredictionProfile(BaseModel):
    class_proportions: dict[str, float]
    score_bin_edges: list[float]
    score_proportions: list[float]
    # Format 2: the training predictions' approval rate (score >= 0.5) and the CBPE estimated accuracy
    # (mean of max(p, 1 - p)) with its standard deviation per row; absent in format 1.
    positive_rate: float | None = None
    estimated_accuracy: float | None = None
    confidence_std: float | None = None

    @model_validator(mode="after")
    def _one_more_bin_than_edges(self) -> "PredictionProfile":
        if len(self.score_bin_edges) == len(self.score_proportions) + 1:  # format 1: outer edges included
            object.__setattr__(self, "score_bin_edges", self.score_bin_edges[1:-1])
        if len(self.score_proportions) != len(self.score_bin_edges) + 1:
            raise ValueError("score_proportions need one more entry than the inner score_bin_edges")
        return self


class ReferenceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1, 2] = 1
    rows: int = Field(gt=0)
    features: dict[str, FeatureProfile]
    predictions: PredictionProfile


class ModelPackage(BaseModel):
    """A verified package on local disk."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    metadata: ModelMetadata
    profile: ReferenceProfile

    @property
    def model_path(self) -> Path:
        return self.root / self.metadata.model_file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def package_sha256(root: Path, model_file: str = MODEL_FILE) -> str:
    """sha256 of the `sha256sum` listing of the model, metadata.json and reference_profile.json, in that order."""
    listing = "".join(f"{sha256_of(root / name)}  {name}\n" for name in (model_file, METADATA_FILE, PROFILE_FILE))
    return hashlib.sha256(listing.encode()).hexdigest()


def load_package(uri: str, cache_dir: Path, expected_sha256: str | None = None) -> ModelPackage:
    """Fetch (for s3://) and verify a package; raises PackageError naming what is wrong and where.

    With `expected_sha256` (the stack's pin) a package whose `package_sha256` differs is refused before anything
    in it is trusted.
    """
    root = fetch_from_s3(uri, cache_dir) if uri.startswith("s3://") else Path(uri)
    if not root.is_dir():
        raise PackageError(f"model package {uri}: no such folder")
    missing = [name for name in (METADATA_FILE, PROFILE_FILE) if not (root / name).is_file()]
    if missing:
        raise PackageError(f"model package {uri}: missing {', '.join(missing)}")
    metadata = _parse(root / METADATA_FILE, ModelMetadata, uri)
    profile = _parse(root / PROFILE_FILE, ReferenceProfile, uri)
    model_path = root / metadata.model_file
    if not model_path.is_file():
        raise PackageError(f"model package {uri}: missing {metadata.model_file}")
    if expected_sha256 is not None:
        digest = package_sha256(root, metadata.model_file)
        if digest != expected_sha256:
            raise PackageError(
                f"model package {uri}: its sha256 is {digest}, but MLSTACK_MODEL_SHA256 pins {expected_sha256}; "
                "refusing a package the stack did not pin"
            )
    actual = sha256_of(model_path)
    if actual != metadata.sha256:
        raise PackageError(
            f"model package {uri}: sha256 of {metadata.model_file} is {actual}, but metadata.json says "
            f"{metadata.sha256}; the file is corrupt or does not belong to this package"
        )
    unprofiled = sorted(set(metadata.feature_names) - set(profile.features))
    if unprofiled:
        raise PackageError(f"model package {uri}: {PROFILE_FILE} has no profile for {unprofiled}")
    for feature in metadata.features:
        profiled = profile.features[feature.name].kind
        if feature.kind is not None and feature.kind != profiled and profile.format > 1:
            raise PackageError(
                f"model package {uri}: {METADATA_FILE} declares {feature.name} {feature.kind}, but {PROFILE_FILE} "
                f"profiles it as {profiled}; retrain to profile it as declared"
            )
    return ModelPackage(root=root, metadata=metadata, profile=profile)


def _parse(path: Path, model: type[ModelT], uri: str) -> ModelT:
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise PackageError(f"model package {uri}: {path.name}: {where}: {first['msg']}") from None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> (bucket, "some/prefix/")."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise PackageError(f"{uri}: an S3 URI needs a bucket, e.g. s3://models/loan-approval/1.0.0/")
    return bucket, (prefix.rstrip("/") + "/") if prefix else ""


def fetch_from_s3(uri: str, cache_dir: Path) -> Path:
    """Download the package's files from s3://bucket/prefix/ into cache_dir."""
    import boto3  # noqa: PLC0415 (only packages in S3 pay for importing boto3)
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    bucket, prefix = split_s3_uri(uri)
    target = cache_dir / bucket / prefix
    target.mkdir(parents=True, exist_ok=True)
    client = boto3.client("s3")
    for name in PACKAGE_FILES:
        try:
            client.download_file(bucket, f"{prefix}{name}", str(target / name))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise PackageError(f"model package {uri}: cannot read s3://{bucket}/{prefix}{name}: {code}") from None
        except BotoCoreError as error:
            raise PackageError(f"model package {uri}: cannot reach S3: {error}") from None
    return target


def write_package(target: Path, model_bytes: bytes, metadata: dict[str, Any], profile: dict[str, Any]) -> ModelPackage:
    """Write a package folder, filling in the model's sha256; returns it verified."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / MODEL_FILE).write_bytes(model_bytes)
    metadata = {**metadata, "model_file": MODEL_FILE, "sha256": hashlib.sha256(model_bytes).hexdigest()}
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (target / PROFILE_FILE).write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    return load_package(str(target), target)
