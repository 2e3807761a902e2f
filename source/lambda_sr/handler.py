"""CPU variant: API Gateway -> this Lambda, models read from the EFS mount at $SUPERRES_MODEL_DIR.

The model loads during the init phase, so only a cold start pays for it.
"""

from __future__ import annotations

from mangum import Mangum

from superres.service.local import local_app
from superres.service.settings import ServiceSettings

handler = Mangum(local_app(ServiceSettings.for_variant("lambda")), lifespan="off")
