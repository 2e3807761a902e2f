"""SageMaker hosting contract: GET /ping and POST /invocations on port 8080.

SageMaker starts the container with the argument ``serve`` and unpacks the
model artifact into /opt/ml/model, which is the default model directory here.
"""

from __future__ import annotations

import os

import uvicorn

from superres.service.local import local_app
from superres.service.settings import ServiceSettings

MODEL_DIR = "/opt/ml/model"


def main() -> None:
    settings = ServiceSettings.for_variant("gpu", model_dir=os.environ.get("SUPERRES_MODEL_DIR", MODEL_DIR))
    uvicorn.run(local_app(settings), host="0.0.0.0", port=8080, log_level="info")


if __name__ == "__main__":
    main()
