"""The model runtime: an onnxruntime session over a verified package; load once, warm up, then predict."""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from mlstack_service.errors import InferenceError
from mlstack_service.package import ModelPackage, PackageError
from mlstack_service.settings import Settings

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class Prediction:
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float32]


def execution_providers(settings: Settings) -> list[str | tuple[str, dict[str, str]]]:
    """CPU by default; CUDA first (CPU for the nodes CUDA does not support) when device=cuda."""
    if settings.device == "cpu":
        return [CPU_PROVIDER]
    return [(CUDA_PROVIDER, {"device_id": str(settings.cuda_device_id)}), CPU_PROVIDER]


def check_providers(settings: Settings, session_providers: Sequence[str], available: Sequence[str]) -> None:
    """Refuse a session that does not run where the settings say.

    onnxruntime does not fail when the CUDA provider cannot be used: a CPU-only build, missing CUDA or cuDNN
    libraries, a CUDA major other than the one onnxruntime-gpu was built for, or no visible GPU all leave a
    session on CPUExecutionProvider with no more than a warning. `session_providers` is what the session took
    (InferenceSession.get_providers()), `available` what this onnxruntime build offers (get_available_providers()).
    """
    if settings.device != "cuda" or CUDA_PROVIDER in session_providers:
        return
    took = ", ".join(session_providers)
    if CUDA_PROVIDER not in available:
        raise PackageError(
            f"MLSTACK_DEVICE=cuda but onnxruntime offers only {', '.join(available)} (the session took {took}); "
            "run the GPU image (onnxruntime-gpu) on a node with an NVIDIA GPU, or set MLSTACK_DEVICE=cpu"
        )
    raise PackageError(
        f"MLSTACK_DEVICE=cuda but the session took only {took} although onnxruntime offers {', '.join(available)}: "
        "the CUDA provider did not load (no GPU visible to the container, or CUDA/cuDNN libraries missing or of "
        "another major than onnxruntime-gpu was built for); refusing to serve on CPU"
    )


class OnnxModel:
    """One model package loaded into an onnxruntime session."""

    def __init__(self, package: ModelPackage, settings: Settings) -> None:
        self.package = package
        self.metadata = package.metadata
        self.feature_count = len(self.metadata.features)
        options = ort.SessionOptions()
        # One intra-op thread per served core: more threads contend with the event loop for the same core.
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's own error lines are plain text on stderr; failures are logged as JSON by the server.
        options.log_severity_level = 4
        # A provider it cannot use is a Python warning and an onnxruntime log line on stderr, not an error:
        # check_providers below turns that into the one refusal line.
        ort.set_default_logger_severity(3)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._session = ort.InferenceSession(
                    str(package.model_path), sess_options=options, providers=execution_providers(settings)
                )
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise PackageError(f"model package {package.root}: onnxruntime cannot load the model: {error}") from None
        self.providers = self._session.get_providers()
        check_providers(settings, self.providers, ort.get_available_providers())
        self._check_signature()
        self._outputs = [self.metadata.label_output, self.metadata.probabilities_output]

    def _check_signature(self) -> None:
        inputs = {node.name: node for node in self._session.get_inputs()}
        if self.metadata.input_name not in inputs:
            raise PackageError(
                f"model package {self.package.root}: the model has no input {self.metadata.input_name!r} "
                f"(it has {sorted(inputs)})"
            )
        width = inputs[self.metadata.input_name].shape[-1]
        if isinstance(width, int) and width != self.feature_count:
            raise PackageError(
                f"model package {self.package.root}: the model takes {width} features but metadata.json lists "
                f"{self.feature_count}"
            )
        outputs = {node.name for node in self._session.get_outputs()}
        expected = {self.metadata.label_output, self.metadata.probabilities_output}
        if not expected <= outputs:
            raise PackageError(
                f"model package {self.package.root}: the model lacks outputs {sorted(expected - outputs)}"
            )

    def warm_up(self) -> Prediction:
        """One inference on a row of mid-range values, so the first real request pays no set-up cost."""
        row = np.array([[(f.min + f.max) / 2 for f in self.metadata.features]], dtype=np.float32)
        return self.predict(row)

    def predict(self, rows: NDArray[np.float32]) -> Prediction:
        try:
            labels, probabilities = self._session.run(self._outputs, {self.metadata.input_name: rows})
        except Exception as error:  # onnxruntime's own exception types
            raise InferenceError(f"the model failed on this input: {type(error).__name__}") from error
        return Prediction(labels=labels, probabilities=probabilities)
