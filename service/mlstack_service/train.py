"""Train the loan-approval classifier and export it as a model package; optionally publish it to S3.

    python -m mlstack_service.train --out service/example_model
    python -m mlstack_service.train --data s3://bucket/datasets/loan-approval/ --out build/package \
        --publish s3://bucket/models/loan-approval/ --version next --min-accuracy 0.8

Without --data it trains on the synthetic applications (the committed example package).

Deterministic: the same seed and library versions give a byte-identical package (the tests check the committed one).
"""

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from numpy.typing import NDArray
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn import __version__ as sklearn_version
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlstack_service.dataset import DatasetError, load_dataset
from mlstack_service.drift_stats import bin_counts
from mlstack_service.package import (
    PROFILE_FORMAT,
    FeatureKind,
    ModelPackage,
    PackageError,
    package_sha256,
    write_package,
)
from mlstack_service.publish import PublishError, ensure_unpublished, next_version, publish_package
from mlstack_service.synthetic import FEATURE_NAMES, FEATURES, generate_applications

MODEL_NAME = "loan-approval"
MODEL_VERSION = "1.0.0"
SEED = 20261128
TRAINING_ROWS = 20_000
HOLDOUT_FRACTION = 0.2
PROFILE_BINS = 20  # quantile bins per continuous feature and for the scores: the KS is evaluated at their edges
# A feature whose training values are all whole numbers, with at most this many distinct ones, is discrete.
MAX_DISCRETE_VALUES = 50
# Exact-value bins rarer than this in training are merged into their neighbour (in value order), so that a chi-square
# test over them is valid from MIN_EXPECTED / share rows on (drift_stats.MIN_EXPECTED).
MIN_BIN_SHARE = 0.02
CALIBRATION_BINS = 10
INPUT_NAME = "input"
CLASS_NAMES = ["rejected", "approved"]
# Opsets every onnxruntime since 1.16 runs.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def train(features: NDArray[np.float32], labels: NDArray[np.int64]) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, max_iter=2_000))])
    model.fit(features, labels)
    return model


def export_onnx(model: Pipeline) -> bytes:
    onnx_model = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURES)]))],
        options={id(model.named_steps["classify"]): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # Drop producer details that vary between machines so the bytes depend on the model only.
    onnx_model.producer_version = ""
    onnx_model.doc_string = ""
    serialized: bytes = onnx_model.SerializeToString()
    return serialized


def infer_kind(column: NDArray[np.float64], declared: FeatureKind | None = None) -> FeatureKind:
    """The declared kind; else discrete when every value is a whole number and there are at most
    MAX_DISCRETE_VALUES distinct ones (counts, terms in months, codes); else continuous."""
    if declared is not None:
        return declared
    whole = bool(np.all(np.isfinite(column)) and np.all(column == np.round(column)))
    return "discrete" if whole and len(np.unique(column)) <= MAX_DISCRETE_VALUES else "continuous"


def _quantile_edges(column: NDArray[np.float64]) -> NDArray[np.float64]:
    inner = np.quantile(column, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1])
    return np.unique(np.round(inner, 6))


def _value_edges(column: NDArray[np.float64]) -> NDArray[np.float64]:
    """Edges halfway between exact values, so each value has its own bin (ties cannot straddle an edge); values
    rarer than MIN_BIN_SHARE join the next ones (the last group joins the one before)."""
    values, counts = np.unique(column, return_counts=True)
    shares = counts / counts.sum()
    groups: list[list[int]] = [[]]
    running = 0.0
    for index, share in enumerate(shares.tolist()):
        groups[-1].append(index)
        running += share
        if running >= MIN_BIN_SHARE:
            groups.append([])
            running = 0.0
    if not groups[-1]:
        groups.pop()
    elif len(groups) > 1:
        groups[-2].extend(groups.pop())
    edges = [(values[left[-1]] + values[right[0]]) / 2 for left, right in itertools.pairwise(groups)]
    return np.round(np.asarray(edges, dtype=np.float64), 6).astype(np.float64)


def _shares(column: NDArray[np.float64], edges: NDArray[np.float64]) -> list[float]:
    counts = bin_counts(column, edges)
    return [round(float(count) / len(column), 6) for count in counts]


def reference_profile(
    features: NDArray[np.float32],
    scores: NDArray[np.float64],
    predicted: NDArray[np.int64],
    declared: dict[str, FeatureKind] | None = None,
) -> dict[str, Any]:
    """What drift detection compares live traffic with: each feature's kind and bins, and the training predictions'
    score bins, approval rate and CBPE estimated accuracy (the mean of max(p, 1 - p))."""
    profile: dict[str, Any] = {"format": PROFILE_FORMAT, "rows": len(features), "features": {}}
    for index, name in enumerate(FEATURE_NAMES):
        column = features[:, index].astype(np.float64)
        kind = infer_kind(column, (declared or {}).get(name))
        edges = _quantile_edges(column) if kind == "continuous" else _value_edges(column)
        profile["features"][name] = {
            "kind": kind,
            "bin_edges": [float(edge) for edge in edges],
            "proportions": _shares(column, edges),
        }
    score_edges = _quantile_edges(scores)
    confidence = np.maximum(scores, 1 - scores)
    profile["predictions"] = {
        "class_proportions": {
            name: round(float(np.mean(predicted == index)), 6) for index, name in enumerate(CLASS_NAMES)
        },
        "score_bin_edges": [float(edge) for edge in score_edges],
        "score_proportions": _shares(scores, score_edges),
        "positive_rate": round(float(np.mean(scores >= 0.5)), 6),
        "estimated_accuracy": round(float(confidence.mean()), 6),
        "confidence_std": round(float(confidence.std()), 6),
    }
    return profile


def calibration(scores: NDArray[np.float64], labels: NDArray[np.int64]) -> dict[str, float]:
    """How far predicted probabilities are from observed frequencies on the holdout (expected calibration error over
    CALIBRATION_BINS equal-width bins), and what CBPE estimates there against what was realized. CBPE is only as good
    as this calibration; a logistic regression is calibrated by its loss, which this records rather than assumes."""
    bins = np.minimum((scores * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    error = 0.0
    for index in range(CALIBRATION_BINS):
        chosen = bins == index
        if chosen.any():
            error += chosen.mean() * abs(scores[chosen].mean() - labels[chosen].mean())
    return {
        "expected_calibration_error": round(float(error), 4),
        "estimated_accuracy": round(float(np.maximum(scores, 1 - scores).mean()), 4),
        "realized_accuracy": round(float(np.mean((scores >= 0.5) == labels)), 4),
    }


def build_package(
    target: Path,
    *,
    rows: int = TRAINING_ROWS,
    seed: int = SEED,
    version: str = MODEL_VERSION,
    joblib_path: Path | None = None,
    data: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None,
) -> ModelPackage:
    """Train (on `data`, or else synthetic applications) and write the package; optionally the pipeline as joblib."""
    if data is None:
        features, labels = generate_applications(rows, seed)
    else:
        # A seeded shuffle, so the holdout is not whatever the last file happened to hold.
        order = np.random.default_rng(seed).permutation(len(data[1]))
        features, labels = data[0][order], data[1][order]
        rows = len(labels)
    split = int(rows * (1 - HOLDOUT_FRACTION))
    model = train(features[:split], labels[:split])
    if joblib_path is not None:
        joblib.dump(model, joblib_path)
    holdout_scores = model.predict_proba(features[split:])[:, 1]
    train_scores = model.predict_proba(features[:split])[:, 1]
    predicted = (train_scores >= 0.5).astype(np.int64)
    profile = reference_profile(features[:split], train_scores, predicted)
    metadata = {
        "name": MODEL_NAME,
        "version": version,
        "input_name": INPUT_NAME,
        "label_output": "label",
        "probabilities_output": "probabilities",
        "class_names": CLASS_NAMES,
        "features": [
            {
                "name": spec.name,
                "type": "float",
                "min": spec.low,
                "max": spec.high,
                "description": spec.description,
                "kind": profile["features"][spec.name]["kind"],  # how drift detection tests it
            }
            for spec in FEATURES
        ],
        "training": {
            "rows": split,
            "seed": seed,
            "positive_rate": round(float(labels[:split].mean()), 6),
            "library": f"scikit-learn {sklearn_version}",
            "estimator": "StandardScaler + LogisticRegression",
            "holdout": {
                "rows": rows - split,
                "accuracy": round(float(accuracy_score(labels[split:], holdout_scores >= 0.5)), 4),
                "log_loss": round(float(log_loss(labels[split:], holdout_scores)), 4),
                "roc_auc": round(float(roc_auc_score(labels[split:], holdout_scores)), 4),
                "calibration": calibration(holdout_scores, labels[split:]),
            },
            "feature_summary": {
                name: {
                    "mean": round(float(features[:split, index].mean()), 4),
                    "std": round(float(features[:split, index].std()), 4),
                }
                for index, name in enumerate(FEATURE_NAMES)
            },
        },
    }
    return write_package(target, export_onnx(model), metadata, profile)


class TrainingError(Exception):
    """Training or publishing cannot go on; the message says why and where."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="package folder to (re)write")
    parser.add_argument("--data", help="labelled CSV/Parquet file or prefix (ending in /), local or s3://")
    parser.add_argument("--label-column", default="label", help="the 0/1 column of --data")
    parser.add_argument("--rows", type=int, default=TRAINING_ROWS, help="synthetic rows (without --data)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--version", default=MODEL_VERSION, help="X.Y.Z, or 'next' (needs --publish)")
    parser.add_argument("--joblib", type=Path, help="also save the scikit-learn pipeline here (for MLServer)")
    parser.add_argument("--publish", help="s3://bucket/models/<name>/: upload the package as <version>/ under it")
    parser.add_argument("--min-accuracy", type=float, default=0.0, help="refuse to publish below this holdout accuracy")
    parser.add_argument("--summary-json", type=Path, help="write name, version, uri and holdout metrics here")
    args = parser.parse_args(argv)
    try:
        summary = run(args)
    except (TrainingError, DatasetError, PublishError, PackageError) as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201 (a command's diagnostic)
        return 2
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(  # noqa: T201 (a command's result)
        f"wrote {summary['path']}: {summary['name']} {summary['version']}, holdout accuracy "
        f"{summary['holdout']['accuracy']}, AUC {summary['holdout']['roc_auc']}, sha256 {summary['sha256'][:12]}"
        + (f"; published to {summary['uri']}" if summary["uri"] else "")
    )
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    version = args.version
    if version == "next":
        if not args.publish:
            raise TrainingError("--version next picks one above the published versions, so it needs --publish")
        version = next_version(args.publish)
    if args.publish:
        ensure_unpublished(args.publish, version)  # before training, not after
    data = None
    if args.data:
        dataset = load_dataset(args.data, FEATURE_NAMES, args.label_column)
        print(  # noqa: T201 (progress of a command)
            f"read {len(dataset.labels)} rows from {len(dataset.sources)} file(s); "
            f"dropped {dataset.dropped_rows} with a missing or non-numeric value",
            file=sys.stderr,
        )
        data = (dataset.features, dataset.labels)
    package = build_package(
        args.out, rows=args.rows, seed=args.seed, version=version, joblib_path=args.joblib, data=data
    )
    holdout = package.metadata.training["holdout"]
    uri = None
    if args.publish:
        if holdout["accuracy"] < args.min_accuracy:
            raise TrainingError(
                f"holdout accuracy {holdout['accuracy']} is below --min-accuracy {args.min_accuracy}; "
                f"{version} was not published"
            )
        uri = publish_package(package, args.publish)
    return {
        "name": package.metadata.name,
        "version": package.metadata.version,
        "path": str(package.root),
        "uri": uri,
        "sha256": package.metadata.sha256,
        # What a stack pins as the model's MLSTACK_MODEL_SHA256.
        "package_sha256": package_sha256(package.root, package.metadata.model_file),
        "holdout": holdout,
    }


if __name__ == "__main__":
    raise SystemExit(main())
