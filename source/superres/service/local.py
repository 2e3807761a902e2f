"""Computing in this process: the backend of the local server, the CPU Lambda and the container,
the app built on it, and a way to run that app in the background."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.types import ASGIApp

from .. import codec
from ..errors import TimeBudgetError
from .app import create_app
from .backends import Upscaled
from .request import Job, model_for
from .settings import ServiceSettings

if TYPE_CHECKING:
    from ..engine import Upscaler


class LocalBackend:
    """Runs the engine in this process on a fixed pool of worker threads.

    The deployment's own models load at start; another installed model a request names
    loads on its first request (which waits for it) and stays loaded.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        from ..store import ModelStore

        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self._loading = threading.Lock()
        self.upscalers = {name: self._load(name) for name in filter(None, {settings.model_x4, settings.model_x2})}
        self.faces = None
        if settings.face_enabled:
            from ..face import FaceRestorer

            # The upscaler's runtime choice and thread budget: OpenVINO on the CPU (the Lambda
            # zip's released conversions), torch on CUDA.
            self.faces = FaceRestorer.from_store(
                self.store,
                settings.face_model,
                runtime=settings.runtime,
                device=settings.device,
                # GFPGAN's bf16 is not checked (no real weights here): never insisted on.
                bf16=False if settings.cpu_bf16 is False else None,
                threads=self._threads(),
                streams=settings.workers,
                converted_dir=settings.converted_dir,
                max_faces=settings.face_max_faces,
                min_face_size=settings.face_min_size,
                weight=settings.face_weight,
            )
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="superres")

    def _load(self, name: str) -> Upscaler:
        from ..engine import Upscaler  # a runtime: only for hosts that compute
        from ..manifest import get_spec
        from ..tiling import TileConfig

        settings = self.settings
        threads = self._threads()
        neuron = settings.runtime == "neuron"  # compiled for one window shape: every window is that shape
        return Upscaler.from_file(
            self.store.network(get_spec(name)),
            get_spec(name),
            runtime=settings.runtime,
            device=settings.device,
            bf16=settings.cpu_bf16,
            threads=threads,
            streams=settings.workers,
            converted_dir=settings.converted_dir,
            tiles=TileConfig(
                tile=settings.tile, pad=settings.pad, fixed_shape=neuron, batch=settings.neuron_batch if neuron else 1
            ),
            neuron_compiler=settings.neuron_compiler,
            neuron_cache_dir=settings.neuron_cache_dir,
            neuron_warmup_wait=settings.neuron_warmup_wait_seconds,
        )

    def _threads(self) -> int:
        """The threads every network of this backend may use, a multiple of the workers. Never
        more threads than cores: the workers share them (torch's pool collapses under
        oversubscription, and two workers of all cores each oversubscribe)."""
        from ..cpu import usable_cores

        threads = max(self.settings.cpu_threads or usable_cores(), self.settings.workers)
        return threads - threads % self.settings.workers

    def upscaler(self, name: str) -> Upscaler:
        loaded = self.upscalers.get(name)
        if loaded is not None:
            return loaded
        with self._loading:  # one load per model, however many requests ask at once
            if name not in self.upscalers:
                self.upscalers[name] = self._load(name)
            return self.upscalers[name]

    async def run(self, job: Job, deadline: float | None) -> Upscaled:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._compute, job, deadline)

    def _compute(self, job: Job, deadline: float | None) -> Upscaled:
        started = time.monotonic()

        def check_deadline(_done: int, _total: int) -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeBudgetError(
                    f"the computation ran past the time budget of {self.settings.time_budget_seconds:.0f} s"
                )

        check_deadline(0, 0)  # it may have waited in the queue for its whole budget
        pixels, _ = codec.decode(job.image)
        model = model_for(job, self.settings)
        result = self.upscaler(model).upscale(pixels, size=job.size, on_progress=check_deadline)
        faces = 0
        if job.face and self.faces is not None:
            result, faces = self.faces.restore(pixels, result, job.scale, on_progress=check_deadline)
        metadata = None if job.strip_metadata else codec.read_metadata(job.image)
        return Upscaled(
            image=codec.encode(result, job.format, quality=job.quality, metadata=metadata),
            format=job.format,
            width=result.shape[1],
            height=result.shape[0],
            scale=job.scale,
            model=model,
            faces=faces,
            seconds=round(time.monotonic() - started, 3),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def local_app(settings: ServiceSettings) -> Starlette:
    return create_app(settings, LocalBackend(settings))


@contextmanager
def serving(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on a thread; yields its base URL (port 0 picks a free one)."""
    import uvicorn  # only here: the Lambda zip and the SageMaker artifact carry no web server

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_host, bound_port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
