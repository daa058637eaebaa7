"""Model packages built by tests: real ONNX graphs that are slow, or that fail at inference time."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlstack_service.package import METADATA_FILE, MODEL_FILE, PROFILE_FILE, write_package

EXAMPLE_PACKAGE = Path(__file__).resolve().parents[2] / "service" / "example_model"
FEATURES = 12
OPSET = [helper.make_opsetid("", 17)]
# What onnxruntime 1.31 reads; newer onnx releases write a newer IR version by default.
IR_VERSION = 8


def _outputs_from_logits(nodes: list[onnx.NodeProto], logits: str) -> None:
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))


def _graph(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> bytes:
    graph = helper.make_graph(
        nodes,
        "test-model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, FEATURES])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


def slow_model_bytes(layers: int, width: int = 1024) -> bytes:
    """A chain of `layers` width x width matrix products per row: slow on purpose, correct outputs."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(size=(FEATURES, width)).astype(np.float32) / 10, "w_in"),
        numpy_helper.from_array(np.eye(width, dtype=np.float32), "w_hidden"),
        numpy_helper.from_array(rng.normal(size=(width, 2)).astype(np.float32) / 100, "w_out"),
    ]
    nodes = [helper.make_node("MatMul", ["input", "w_in"], ["h0"])]
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{layer}", "w_hidden"], [f"h{layer + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]))
    _outputs_from_logits(nodes, "logits")
    return _graph(nodes, initializers)


def failing_model_bytes() -> bytes:
    """Looks up a table by the first feature (age): an age past the table fails inside onnxruntime."""
    initializers = [
        numpy_helper.from_array(np.linspace(0, 1, 100, dtype=np.float32), "table"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
        numpy_helper.from_array(np.full((FEATURES, 2), 0.01, dtype=np.float32), "weights"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "start", "end", "axis"], ["age"]),
        helper.make_node("Cast", ["age"], ["age_index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "age_index"], ["looked_up"]),
        helper.make_node("MatMul", ["input", "weights"], ["scores"]),
        helper.make_node("Add", ["scores", "looked_up"], ["logits"]),
    ]
    _outputs_from_logits(nodes, "logits")
    return _graph(nodes, initializers)


def package_with_model(target: Path, model_bytes: bytes) -> Path:
    """The example package's metadata and profile around another model file."""
    metadata = json.loads((EXAMPLE_PACKAGE / METADATA_FILE).read_text())
    profile = json.loads((EXAMPLE_PACKAGE / PROFILE_FILE).read_text())
    write_package(target, model_bytes, metadata, profile)
    return target


def copy_example(target: Path) -> Path:
    shutil.copytree(EXAMPLE_PACKAGE, target)
    return target


def corrupt(package: Path) -> None:
    model = package / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
