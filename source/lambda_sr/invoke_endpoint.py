"""GPU/Inf1 variant: API Gateway -> this Lambda -> SageMaker endpoint $SUPERRES_ENDPOINT_NAME.

It validates and fetches exactly like the other hosts (same app, same
contract), so a bad request is answered here and never costs GPU time; it
imports no torch.
"""

from __future__ import annotations

import os

from mangum import Mangum

from superres.service.app import create_app
from superres.service.backends import SageMakerBackend
from superres.service.settings import ServiceSettings

_settings = ServiceSettings.for_variant("gpu")
handler = Mangum(
    create_app(_settings, SageMakerBackend(_settings, os.environ["SUPERRES_ENDPOINT_NAME"])), lifespan="off"
)
