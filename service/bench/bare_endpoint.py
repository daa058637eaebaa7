"""The bare baseline for `make bench`: FastAPI + uvicorn + onnxruntime, one route, no metrics, logs or checks.

It shows what the HTTP stack alone costs; the real server must reach 90% of it with every feature on.
"""

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["BARE_MODEL_PATH"], sess_options=options, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    tensor = body["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    labels, probabilities = session.run(None, {"input": rows})
    return {
        "model_name": name,
        "outputs": [
            {"name": "label", "shape": [len(labels)], "datatype": "INT64", "data": labels.tolist()},
            {
                "name": "probabilities",
                "shape": list(probabilities.shape),
                "datatype": "FP32",
                "data": probabilities.ravel().tolist(),
            },
        ],
    }
