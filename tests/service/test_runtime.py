"""Where the model runs: MLSTACK_DEVICE=cuda is a promise the session must keep, checked against onnxruntime."""

from contextlib import nullcontext
from pathlib import Path

import onnxruntime as ort
import pytest

from mlstack_service.package import PackageError, load_package
from mlstack_service.runtime import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    OnnxModel,
    check_providers,
    execution_providers,
)
from mlstack_service.settings import Settings
from tests.service.models import EXAMPLE_PACKAGE

CPU = Settings(device="cpu")
CUDA = Settings(device="cuda")


def _session_asking_for(settings: Settings) -> ort.InferenceSession:
    """A session over the example model given the providers the service asks for; the CPU build ignores CUDA."""
    expected = pytest.warns(UserWarning, match=CUDA_PROVIDER) if settings.device == "cuda" else nullcontext()
    with expected:
        return ort.InferenceSession(str(EXAMPLE_PACKAGE / "model.onnx"), providers=execution_providers(settings))


def test_a_cuda_session_that_fell_back_to_cpu_is_refused(tmp_path: Path) -> None:
    package = load_package(str(EXAMPLE_PACKAGE), tmp_path)
    available = ort.get_available_providers()
    assert CUDA_PROVIDER not in available, "these tests run the CPU build of onnxruntime"
    with pytest.raises(PackageError) as refused:
        OnnxModel(package, CUDA)
    message = str(refused.value)
    assert message.startswith("MLSTACK_DEVICE=cuda but onnxruntime offers only")
    assert f"offers only {', '.join(available)} (the session took {CPU_PROVIDER})" in message
    # The same package serves on CPU.
    assert OnnxModel(package, CPU).providers == [CPU_PROVIDER]


def test_the_check_reads_what_the_session_took_against_what_onnxruntime_offers() -> None:
    taken = _session_asking_for(CUDA).get_providers()
    available = ort.get_available_providers()
    assert taken == [CPU_PROVIDER]
    check_providers(CPU, taken, available)
    with pytest.raises(PackageError, match="onnxruntime offers only"):
        check_providers(CUDA, taken, available)
    # A GPU build that offers CUDA but could not load it (no GPU visible, or CUDA libraries of another major).
    gpu_build = [CUDA_PROVIDER, *available]
    with pytest.raises(PackageError, match="the CUDA provider did not load"):
        check_providers(CUDA, taken, gpu_build)
    check_providers(CUDA, [CUDA_PROVIDER, *taken], gpu_build)


def test_cpu_sessions_ask_for_cpu_only() -> None:
    assert _session_asking_for(CPU).get_providers() == [CPU_PROVIDER]
