"""The committed gRPC messages are what protoc makes of the committed .proto (make protos)."""

import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
PROTO = "mlstack_service/proto/oip_v2.proto"


def test_committed_messages_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", PROTO],
        cwd=SERVICE,
        check=True,
    )
    for suffix in ("_pb2.py", "_pb2.pyi"):
        generated = (tmp_path / PROTO.replace(".proto", suffix)).read_text()
        committed = (SERVICE / PROTO.replace(".proto", suffix)).read_text()
        assert generated == committed, f"{PROTO.replace('.proto', suffix)} is stale: run `make protos`"


def test_the_wire_names_and_numbers_are_the_protocols() -> None:
    """The field numbers KServe's and Triton's clients put on the wire; a renumbered field breaks every client."""
    text = (SERVICE / PROTO).read_text()
    for declaration in (
        "package inference;",
        "service GRPCInferenceService {",
        "repeated InferInputTensor inputs = 5;",
        "repeated InferRequestedOutputTensor outputs = 6;",
        "repeated bytes raw_input_contents = 7;",
        "repeated InferOutputTensor outputs = 5;",
        "repeated bytes raw_output_contents = 6;",
        "InferTensorContents contents = 5;",
        "repeated float fp32_contents = 6;",
        "repeated double fp64_contents = 7;",
        "repeated int64 int64_contents = 3;",
        "map<string, InferParameter> parameters = 4;",
    ):
        assert declaration in text, declaration
