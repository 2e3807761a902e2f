"""The app with a backend computing in this process: the local server and the CPU hosts."""

from __future__ import annotations

from starlette.applications import Starlette

from .app import create_app
from .backends import LocalBackend
from .settings import ServiceSettings


def local_app(settings: ServiceSettings) -> Starlette:
    return create_app(settings, LocalBackend(settings))
