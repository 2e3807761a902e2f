"""Deployment settings: one set of defaults per variant, every field overridable by environment.

Each field comes from, in this order: an explicit argument (``ServiceSettings(model_dir=...)``,
``superres serve --model-dir``), the environment as ``SUPERRES_<FIELD>`` (e.g.
``SUPERRES_MAX_INPUT_PIXELS``, ``SUPERRES_ALLOWED_S3_BUCKETS='["my-bucket"]'``), the defaults
of the variant, the field's own default. The variant (``local``, ``lambda``, ``gpu``) is
itself a field: an explicit one, else ``SUPERRES_VARIANT``, else local; its defaults are the
ones applied. The CloudFormation stacks set the environment from their parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypedDict, get_args

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..runtimes import HostRuntime, NeuronCompilerName

Variant = Literal["local", "lambda", "gpu"]

#: API Gateway cuts every integration at 29 s; keep a margin for decoding,
#: encoding and the trip back.
_API_GATEWAY_BUDGET = 26.0
#: Synchronous Lambda payloads are capped at 6 MB each way (API Gateway at 10 MB).
_LAMBDA_PAYLOAD = 6 * 1000 * 1000
_API_GATEWAY_PAYLOAD = 10 * 1000 * 1000
#: A Lambda function runs 900 s at most; the job worker stops computing before.
_LAMBDA_WORKER_BUDGET = 840.0
#: The largest scale any deployment may allow: the contract's maximum for ``scale``.
MAX_SCALE = 16


class VariantDefaults(TypedDict, total=False):
    """The fields whose defaults differ by variant."""

    max_request_bytes: int
    max_response_bytes: int
    max_input_pixels: int
    max_face_input_pixels: int
    time_budget_seconds: float
    job_time_budget_seconds: float
    face_enabled: bool
    device: str
    throughput_mflops: float
    binary_as_base64: bool


# The guide's size advice per variant: Lambda "about 400 x 400", GPU 1920 x 1080,
# 1280 x 720 with face enhancement.
VARIANT_DEFAULTS: dict[Variant, VariantDefaults] = {
    "local": {
        "max_request_bytes": _API_GATEWAY_PAYLOAD,
        "max_response_bytes": _API_GATEWAY_PAYLOAD,
        "max_input_pixels": 1920 * 1080,
        "time_budget_seconds": 0.0,
    },
    "lambda": {
        "max_request_bytes": _LAMBDA_PAYLOAD,
        "max_response_bytes": _LAMBDA_PAYLOAD,
        "max_input_pixels": 400 * 400,
        # Face enhancement (opt-in, FaceEnhancement) does not raise the limit on this variant.
        "max_face_input_pixels": 400 * 400,
        "time_budget_seconds": _API_GATEWAY_BUDGET,
        # The worker function runs for 15 minutes at most; keep a margin for storing the result.
        "job_time_budget_seconds": _LAMBDA_WORKER_BUDGET,
        # Lambda has no GPU: "auto" would import torch only to find none.
        "device": "cpu",
        "binary_as_base64": True,
    },
    "gpu": {
        "max_request_bytes": _LAMBDA_PAYLOAD,
        "max_response_bytes": _LAMBDA_PAYLOAD,
        "max_input_pixels": 1920 * 1080,
        "time_budget_seconds": _API_GATEWAY_BUDGET,
        "face_enabled": True,
        "device": "cuda",
        # ml.g4dn.xlarge (T4, fp16); to be replaced by a figure measured on one.
        "throughput_mflops": 8_000_000.0,
        # Its API function is the invoke-endpoint Lambda.
        "binary_as_base64": True,
    },
}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPERRES_", frozen=True, extra="forbid")

    variant: Variant = "local"
    #: The network of requests that name none; also serves scales up to 2 (x4 then Lanczos)
    #: unless model_x2 is set.
    model_x4: str = "RealESRGAN_x4plus"
    model_x2: str | None = None
    #: The models a request may name (``model``). Unset: model_x4, model_x2 and every other
    #: upscaler of the manifest whose weights or released conversion is in ``model_dir``.
    models: frozenset[str] | None = None
    #: The largest ``scale`` (or width/height over the input's) a request may ask for.
    max_scale: float = Field(default=8.0, ge=1, le=MAX_SCALE)
    model_dir: Path | None = None
    device: str = "auto"
    #: What runs the network: auto = torch on CUDA, OpenVINO on the CPU (runtimes.load_runner);
    #: neuron = compiled for AWS Inferentia (the Inferentia model sets it).
    runtime: HostRuntime = "auto"
    #: Where networks converted for OpenVINO are kept (converted on first use when missing).
    converted_dir: Path | None = None
    tile: int = 256
    pad: int = 32
    #: The Neuron runtime (AWS Inferentia): windows per call of the network compiled for
    #: ``tile + 2 * pad`` pixel windows, and what compiles it: auto = the Neuron package the
    #: image has (torch-neuron on Inf1, torch-neuronx on Inf2); cpu-trace = a CPU TorchScript
    #: trace, only for tests, and only when asked for by name.
    neuron_batch: int = Field(default=4, ge=1)
    neuron_compiler: NeuronCompilerName = "auto"
    #: Where the compiled network is kept on the instance (its workers compile it once).
    neuron_cache_dir: Path = Path("/tmp/superres-neuron")
    #: How long a request waits for the compile before its 503: 0 for real-time requests (a
    #: client retries); the asynchronous model waits, because its invocation has an hour.
    neuron_warmup_wait_seconds: float = Field(default=0, ge=0)
    #: The network in bf16 on CPUs with AMX/AVX512-BF16, its first layer in fp32 (>= 50 dB
    #: against fp32): unset = wherever the CPU runs bf16 natively, false = always fp32.
    cpu_bf16: bool | None = None
    #: The CPU threads all ``workers`` share (each gets ``cpu_threads // workers``), so the
    #: service never runs more threads than the cores it is given. Unset: the usable cores.
    cpu_threads: int | None = Field(default=None, ge=1)

    max_request_bytes: int = Field(default=_API_GATEWAY_PAYLOAD, gt=0)
    #: The whole JSON answer, base64 result included; or a raw image answer.
    max_response_bytes: int = Field(default=_API_GATEWAY_PAYLOAD, gt=0)
    #: The host is a Lambda function behind API Gateway: a raw image answer travels base64 in
    #: the function's answer to API Gateway and counts so against ``max_response_bytes``.
    binary_as_base64: bool = False
    max_input_pixels: int = Field(default=1920 * 1080, gt=0)
    max_face_input_pixels: int = Field(default=1280 * 720, gt=0)
    max_output_pixels: int = Field(default=7680 * 4320, gt=0)
    #: Requests predicted to compute longer are refused up front (413), and a
    #: computation that runs past it is stopped (504). 0 = no budget.
    time_budget_seconds: float = Field(default=0.0, ge=0)
    #: Sustained network throughput used for that prediction, in MFLOP/s
    #: (bench/engine_bench.py measures it; 2 CPU threads reach about 110 000).
    throughput_mflops: float = Field(default=110_000.0, gt=0)

    face_enabled: bool = False
    face_model: str = "GFPGANv1.4"
    #: The largest faces first; each costs one 512x512 GFPGAN pass.
    face_max_faces: int = Field(default=10, ge=0)
    #: Faces smaller than this (shorter box side, input pixels) are left as upscaled.
    face_min_size: int = Field(default=32, ge=0)
    #: 1 = the restored face as GFPGAN makes it; lower mixes in the upscaled face.
    face_weight: float = Field(default=1.0, ge=0, le=1)
    #: Computations running at once, and requests allowed to wait for one;
    #: past both, answers are 429 at once.
    workers: int = Field(default=1, ge=1)
    queue_size: int = Field(default=4, ge=0)

    allowed_s3_buckets: frozenset[str] = frozenset()
    #: The one web origin (or ``*``) whose pages may read the answers (CORS); empty: none.
    #: The stacks set it from CorsAllowOrigin; API Gateway answers the preflights itself.
    cors_origin: str = ""
    #: Only for tests that serve images from 127.0.0.1.
    allow_loopback_urls: bool = False
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)

    #: S3 output (``"output": "s3"`` and job results): the bucket, a key prefix, and how long
    #: the presigned GET URL answered stays valid. No bucket: ``"output": "s3"`` is a 400.
    output_bucket: str | None = None
    output_prefix: str = "results/"
    output_url_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)

    #: Asynchronous jobs (POST /jobs). With ``job_table`` (DynamoDB) and ``job_queue_url``
    #: (SQS) set, jobs are kept and queued in AWS and a worker function runs them; otherwise
    #: the local variant keeps them in this process and runs them on ``job_workers`` tasks
    #: with ``job_queue_size`` waiting at most (past that, 429), and other variants have none.
    job_table: str | None = None
    job_queue_url: str | None = None
    #: The GPU/Inf1 stacks run jobs on a SageMaker asynchronous endpoint instead of a queue.
    async_endpoint_name: str | None = None
    #: SNS topic told of every finished job (succeeded or failed); none: no notification.
    job_topic_arn: str | None = None
    job_workers: int = Field(default=1, ge=1)
    job_queue_size: int = Field(default=16, ge=1)
    #: Finished jobs (and their results, without an output bucket) this process keeps.
    job_history: int = Field(default=256, ge=1)
    #: How long a job record is kept in the table (DynamoDB TTL).
    job_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    #: Jobs have their own limits: no API Gateway cut, so a longer budget and larger inputs.
    job_time_budget_seconds: float = Field(default=0.0, ge=0)
    job_max_input_pixels: int = Field(default=1920 * 1080, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First source wins: explicit arguments, then the environment, then the variant's defaults.
        return init_settings, env_settings, _VariantDefaultsSource(settings_cls)

    @classmethod
    def for_variant(cls, variant: Variant | None = None, **overrides: Any) -> ServiceSettings:
        """Settings of ``variant`` (else ``$SUPERRES_VARIANT``, else local); ``overrides`` win
        over the environment, which wins over the variant's defaults."""
        return cls(**overrides) if variant is None else cls(variant=variant, **overrides)


class _VariantDefaultsSource(PydanticBaseSettingsSource):
    """The defaults of the variant the sources before it chose (explicit, else environment),
    else of local; so the variant reported is always the one whose defaults apply."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        chosen = self.current_state.get("variant", "local")
        if chosen not in get_args(Variant):
            raise ValueError(f"SUPERRES_VARIANT must be one of {', '.join(get_args(Variant))}, not {chosen!r}")
        return {"variant": chosen, **VARIANT_DEFAULTS[chosen]}
