"""The OpenAPI document of the server's routes, built from pydantic models of the OIP v2 messages."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from mlstack_service.package import ModelMetadata


class RequestInput(BaseModel):
    name: str = Field(description="the model's input name")
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=2, max_length=2, description="[rows, features]")
    datatype: Literal["FP32", "FP64"]
    data: list[float] | list[list[float]] = Field(description="row-major values, flat or one list per row")


class RequestOutput(BaseModel):
    name: str


class InferenceRequest(BaseModel):
    id: str | None = Field(
        None,
        description="echoed in the response for tracing; feedback takes the X-Prediction-ID the response carries",
    )
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] | list[int]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any]


class BuildInfo(BaseModel):
    commit: str = Field(description="the git commit the image was built from, or 'unknown'")


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]
    build: BuildInfo


class ReadyResponse(BaseModel):
    ready: bool
    error: str | None = None


class LiveResponse(BaseModel):
    live: bool


class FeedbackRequest(BaseModel):
    id: str = Field(description="the id of the infer response the labels are for")
    labels: list[Annotated[int, Field(ge=0, le=1)]] = Field(description="the true class index of each row, in order")


class FeedbackResponse(BaseModel):
    id: str
    recorded: bool = Field(description="false when this id's labels were already recorded (counted once)")


class ErrorResponse(BaseModel):
    error: str = Field(description="what went wrong, in words the client can act on")


SCHEMAS = (
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    ServerMetadataResponse,
    ReadyResponse,
    LiveResponse,
    FeedbackRequest,
    FeedbackResponse,
    ErrorResponse,
)


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def openapi_document(metadata: ModelMetadata, server_version: str) -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in SCHEMAS], ref_template="#/components/schemas/{model}"
    )
    error = _json("ErrorResponse", "client error: the message names the problem")
    model_name = {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [metadata.name]},
    }
    model_version = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [metadata.version]},
    }
    infer = {
        "summary": "Inference: one row per example, columns in the model's feature order",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
        },
        "responses": {
            "200": _json("InferenceResponse", "predictions"),
            "400": error,
            "404": error,
            "413": error,
            "500": _json("ErrorResponse", "the model failed; the message carries an error id"),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlstack model service",
            "version": server_version,
            "description": (
                f"Open Inference Protocol v2 (REST) serving {metadata.name} {metadata.version}. "
                f"Features, in column order: {', '.join(metadata.feature_names)}."
            ),
        },
        "paths": {
            "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json("ServerMetadataResponse", "ok")}}},
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": _json("LiveResponse", "alive")}}},
            "/v2/health/ready": {
                "get": {
                    "summary": "Readiness: the model is loaded and warmed up, and the server is not draining",
                    "responses": {"200": _json("ReadyResponse", "ready"), "503": _json("ReadyResponse", "not ready")},
                }
            },
            "/v2/models/{model_name}": {
                "get": {
                    "summary": "Model metadata",
                    "parameters": [model_name],
                    "responses": {"200": _json("ModelMetadataResponse", "ok"), "404": error},
                }
            },
            "/v2/models/{model_name}/ready": {
                "get": {
                    "summary": "Model readiness",
                    "parameters": [model_name],
                    "responses": {
                        "200": _json("ReadyResponse", "ready"),
                        "404": error,
                        "503": _json("ReadyResponse", "not ready"),
                    },
                }
            },
            "/v2/models/{model_name}/infer": {"post": {**infer, "parameters": [model_name]}},
            "/v2/models/{model_name}/versions/{model_version}/infer": {
                "post": {**infer, "parameters": [model_name, model_version]}
            },
            "/v2/models/{model_name}/feedback": {
                "post": {
                    "summary": "Ground truth for an earlier inference, for the rolling accuracy and log loss",
                    "parameters": [model_name],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
                    },
                    "responses": {
                        "200": _json("FeedbackResponse", "recorded, or already recorded"),
                        "400": error,
                        "404": _json("ErrorResponse", "unknown or expired id, or feedback is off on this server"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": definitions["$defs"]},
    }
