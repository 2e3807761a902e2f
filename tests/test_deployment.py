"""deployment/: the release build, its archives, the link table, publish, deploy and customer keys.

- ``deployment/build-s3-dist.sh`` runs for real (pip installs the Lambda packages for
  python3.12/x86_64 from the package index) with the models ``../shared/models`` holds;
  the archives are unpacked and inspected, the invoke-endpoint zip is imported and
  answers an API Gateway event under Python 3.12 with nothing but its own contents on
  the path, and a second build is byte-identical;
- the quick-create URLs are parsed back into region, template URL and stack name, and
  README's table must equal the generator's output;
- publish, ``superres stack`` and ``superres keys`` run against moto in server mode on
  127.0.0.1. moto implements S3, CloudFormation (stacks, events, outputs) and API
  Gateway keys and usage plans, but not GetUsage (the request counts API Gateway keeps):
  the test server answers that one call itself, from moto's plan and key records and
  counts the test sets. moto also never reports a resource failure as a stack event
  (a failing resource makes CreateStack itself fail), so the event-based failure report
  is exercised only through CloudFormation's refusals and the wait timeout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SHARED, load_photo, write_random_gfpgan
from lambda_events import api_gateway_event
from repo_modules import load_script
from servers import create_job_resources, running
from superres import cli, codec
from superres.operate import keys as api_keys
from superres.operate import links, publish, rules, stack
from superres.operate.regions import REGIONS
from superres.store import ModelStore, sha256_of

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = ROOT / "deployment"


build = load_script("templates_build", "templates/build.py")
package = load_script("deployment_package", "deployment/package.py")

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

EPOCH = 1_700_000_000
#: What ../shared/models holds (known copies; GFPGAN's weights are not available here).
MODELS = ["realesr-animevideov3", "YuNet"]
PREFIX, SOLUTION, VERSION = (build.EXAMPLE_ASSETS[k] for k in build.PLACEHOLDERS)
REGION = "us-east-1"
GLOBAL_ASSETS = {"lambda-efs.template", "sagemaker-gpu.template", "sagemaker-inferentia.template"}
REGIONAL_ASSETS = {
    "cpu-service.zip",
    "efs-model-stager.zip",
    "invoke-endpoint.zip",
    "sagemaker-gpu-model.tar.gz",
    "sagemaker-neuron-model.tar.gz",
}


def run_build(out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "bash",
            str(DEPLOYMENT / "build-s3-dist.sh"),
            PREFIX,
            SOLUTION,
            VERSION,
            "--model-dir",
            str(SHARED / "models"),
            "--models",
            ",".join(MODELS),
            "--no-fetch",
            "--out",
            str(out),
            *extra,
        ],
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "PYTHON": sys.executable, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist-a")
    result = run_build(out)
    assert result.returncode == 0, result.stderr
    return out


def tree(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def top_levels(archive: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in archive.namelist()}


# ---------------------------------------------------------------- build-s3-dist.sh


def test_build_writes_the_aws_solutions_layout(built: Path) -> None:
    assert {p.name for p in (built / "global-s3-assets").iterdir()} == GLOBAL_ASSETS
    assert {p.name for p in (built / "regional-s3-assets").iterdir()} == REGIONAL_ASSETS | {"networks"}
    networks = built / "regional-s3-assets" / "networks"
    # Of the models built, the networks with an OpenVINO plan: YuNet's graph too, as IR (the zip's
    # OpenVINO reads nothing else).
    assert sorted(p.name for p in networks.iterdir()) == [
        "YuNet.openvino",
        "manifest.json",
        "realesr-animevideov3.openvino",
    ]
    released = json.loads((networks / "manifest.json").read_text())["networks"]
    assert released["YuNet"]["plan"] == "fp32" and set(released["YuNet"]["files"]) == {"network.xml", "network.bin"}
    assert not (built / "container-contexts").exists()  # no image of the kit's own to build


def test_global_assets_are_the_templates_with_placeholders_filled(built: Path) -> None:
    for asset, generated in package.TEMPLATES.items():
        text = (built / "global-s3-assets" / asset).read_text()
        assert text == build.substitute((ROOT / "templates" / generated).read_text(), build.EXAMPLE_ASSETS)
        assert "%%" not in text
        source = json.loads(text)["Mappings"]["Assets"]["Source"]
        # No stack pulls an image of the kit's: no registry account of the publisher's.
        assert source == {"BucketPrefix": PREFIX, "KeyPrefix": f"{SOLUTION}/{VERSION}"}


def test_the_templates_reference_exactly_the_regional_assets_built(built: Path) -> None:
    referenced = set()
    for asset in GLOBAL_ASSETS:
        referenced |= set(re.findall(r"([\w.-]+\.(?:zip|tar\.gz))", (built / "global-s3-assets" / asset).read_text()))
    assert referenced == REGIONAL_ASSETS


def _assert_reproducible_zip(archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    assert names == sorted(names)
    for info in archive.infolist():
        assert info.date_time == time.gmtime(EPOCH)[:6], info.filename
        assert (info.external_attr >> 16) & 0o777 in (0o644, 0o755), info.filename


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize(
    ("asset", "group"),
    [
        ("cpu-service.zip", "lambda-cpu-service"),
        ("efs-model-stager.zip", "lambda-model-stager"),
        ("invoke-endpoint.zip", "lambda-invoke-endpoint"),
    ],
)
def test_zip_carries_exactly_the_locked_versions(built: Path, asset: str, group: str) -> None:
    """Every distribution in a zip is at requirements.lock's version, and its group's direct members are all there."""
    locked = {
        _canonical(name): version.split(";")[0].split("\\")[0].strip()
        for name, _, version in (
            line.partition("==") for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line
        )
        if name[:1].isalnum()
    }
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"][group]
    with zipfile.ZipFile(built / "regional-s3-assets" / asset) as archive:
        shipped = dict(
            name.removesuffix(".dist-info").rsplit("-", 1)
            for name in top_levels(archive)
            if name.endswith(".dist-info")
        )
    assert {_canonical(name): version for name, version in shipped.items()} == {
        name: locked[name] for name in map(_canonical, shipped)
    }
    assert {_canonical(name) for name in wanted} <= set(map(_canonical, shipped))


def test_stager_zip_is_self_contained(built: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(built / "regional-s3-assets" / "efs-model-stager.zip") as archive:
        _assert_reproducible_zip(archive)
        ours = {n for n in archive.namelist() if n.startswith("superres/")}
        assert ours == {f"superres/{m}.py" for m in ("__init__", "errors", "manifest", "store")}
        tops = top_levels(archive)
        assert {"efs_model_stager.py", "crhelper", "httpx", "httpcore", "h11", "anyio", "idna", "certifi"} <= tops
        assert not tops & {"torch", "numpy", "cv2", "boto3"}
        archive.extractall(tmp_path)
    # The Lambda runtime brings boto3 (crhelper imports it): a folder with just boto3 and
    # its dependencies stands in for it. Else only the zip and the standard library (-S).
    runtime = tmp_path.parent / f"{tmp_path.name}-runtime"
    runtime.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        module = sys.modules.get(name) or __import__(name)
        assert module.__file__, f"{name} is a namespace package"
        origin = Path(module.__file__)
        (runtime / (origin.parent.name if origin.name == "__init__.py" else origin.name)).symlink_to(
            origin.parent if origin.name == "__init__.py" else origin
        )
    probe = (
        "import sys; sys.path[:0] = sys.argv[1:3]; import efs_model_stager, superres.store, httpx, crhelper;"
        "print(efs_model_stager.__file__, superres.store.__file__, httpx.__file__, crhelper.__file__, sep='\\n')"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path), str(runtime)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(tmp_path) + "/") for line in result.stdout.split())


def python312() -> str:
    """Python 3.12 (the Lambda runtime's): on PATH, or one of pyenv's versions."""
    candidates = [shutil.which("python3.12")]
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
        candidates += sorted(str(p) for p in Path(root).glob("versions/3.12*/bin/python3.12"))
    for found in filter(None, candidates):
        if subprocess.run([found, "-c", "pass"], capture_output=True, check=False).returncode == 0:
            return found
    pytest.fail("no python3.12 on this machine to import the Lambda zip with: install one (pyenv install 3.12)")


def test_invoke_endpoint_zip_answers_under_python_312(built: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(built / "regional-s3-assets" / "invoke-endpoint.zip") as archive:
        _assert_reproducible_zip(archive)
        names = archive.namelist()
        tops = top_levels(archive)
        assert {"lambda_sr", "superres", "starlette", "mangum", "pydantic_settings", "PIL", "boto3"} <= tops
        assert not tops & {"torch", "torchvision", "numpy", "cv2", "spandrel", "bin"}
        assert "superres/service/openapi.yaml" in names and "lambda_sr/invoke_endpoint.py" in names
        assert not [n for n in names if "__pycache__" in n]
        for pin in ("starlette-1.10.0", "mangum-0.22.0", "pydantic_settings-2.14.1", "pillow-13.0.0", "boto3-1.44.5"):
            assert f"{pin}.dist-info" in tops, pin
        extensions = [n for n in names if ".cpython-" in n and n.endswith(".so")]
        assert extensions and all(n.endswith(".cpython-312-x86_64-linux-gnu.so") for n in extensions)
        archive.extractall(tmp_path)
    # Python 3.12 as in the Lambda runtime, only the zip on the path: import the handler
    # and send it a request the service refuses before any endpoint is called.
    event = api_gateway_event(json.dumps({"img": "aGVsbG8=", "scale": 9}))
    probe = "\n".join(
        [
            "import json, sys",
            "sys.path.insert(0, sys.argv[1])",
            "import lambda_sr.invoke_endpoint as h",
            "class Context: aws_request_id = 'r'; function_name = 'f'; invoked_function_arn = 'arn'; memory_limit_in_mb = 1024",
            "print(json.dumps(h.handler(json.loads(sys.argv[2]), Context())))",
        ]
    )
    env = {
        "PATH": os.environ["PATH"],
        "SUPERRES_ENDPOINT_NAME": "superres-endpoint",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    result = subprocess.run(
        [python312(), "-S", "-c", probe, str(tmp_path), json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["code"]


CPU_SERVICE_PROBE = """
import base64, json, sys
sys.path.insert(0, sys.argv[1])
with open(sys.argv[2]) as file:
    events = json.load(file)
import lambda_sr.handler as api, lambda_sr.worker as worker

class Context:
    function_name = "superres"
    aws_request_id = "lambda-request-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:superres"
    memory_limit_in_mb = 10240

    def get_remaining_time_in_millis(self):
        return 29_000

answers = {name: api.handler(event, Context()) for name, event in events.items()}
import boto3
sqs = boto3.client("sqs")
messages = sqs.receive_message(QueueUrl=sys.argv[3], MaxNumberOfMessages=10).get("Messages", [])
records = [{"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in messages]
answers["sqs"] = worker.handler({"Records": records}, Context())
try:
    import torch
    answers["torch"] = "importable"
except ImportError:
    answers["torch"] = "absent"
answers["loaded"] = sorted(m for m in ("torch", "cv2", "spandrel", "uvicorn") if m in sys.modules)
print(json.dumps(answers))
"""


def unpack_cpu_service(built: Path, code: Path) -> int:
    """Unpack cpu-service.zip into ``code`` after checking what it holds; its unzipped size."""
    regional = built / "regional-s3-assets"
    with zipfile.ZipFile(regional / "cpu-service.zip") as archive:
        _assert_reproducible_zip(archive)
        unzipped = sum(info.file_size for info in archive.infolist())
        tops = top_levels(archive)
        assert {"lambda_sr", "superres", "openvino", "numpy", "PIL", "png.py", "mangum", "boto3"} <= tops
        assert not [name for name in tops if name.startswith(".")]
        assert not tops & {"torch", "torchvision", "cv2", "spandrel", "bin"}
        libs = {Path(n).name for n in archive.namelist() if n.startswith("openvino/libs/")}
        assert "libopenvino_intel_cpu_plugin.so" in libs and not {n for n in libs if "gpu" in n or "npu" in n}
        assert not {n for n in libs if "onnx" in n}  # the face detector ships as IR too
        archive.extractall(code)
    assert unzipped < package.LAMBDA_UNZIPPED_LIMIT
    print(
        f"cpu-service.zip: {unzipped / 2**20:.1f} MiB unzipped, {(regional / 'cpu-service.zip').stat().st_size / 2**20:.1f} MiB zipped"
    )
    return unzipped


def run_cpu_service(
    code: Path, models: Path, events: dict[str, Any], queue: str, env: dict[str, str]
) -> dict[str, Any]:
    """CPU_SERVICE_PROBE as Lambda runs it: Python 3.12, only the zip on the path (no
    site-packages, so no torch), ``models`` as the stager leaves the model directory on EFS."""
    events_file = code.parent / "events.json"  # a photo's event is past the length of one argument
    events_file.write_text(json.dumps(events))
    result = subprocess.run(
        [python312(), "-S", "-I", "-c", CPU_SERVICE_PROBE, str(code), str(events_file), queue],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PATH": os.environ["PATH"], "SUPERRES_VARIANT": "lambda", "SUPERRES_MODEL_DIR": str(models)},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert (answers["torch"], answers["loaded"]) == ("absent", [])
    return answers


def test_cpu_service_zip_answers_api_and_sqs_events_without_torch(
    built: Path, tmp_path: Path, aws_url: str, aws_env: dict[str, str]
) -> None:
    """The API function and the job worker as Lambda runs them, the converted network in a
    model directory beside them, and the stack's job resources in moto."""
    unpack_cpu_service(built, tmp_path / "code")
    models = tmp_path / "models"
    networks = built / "regional-s3-assets" / "networks"
    shutil.copytree(networks / "realesr-animevideov3.openvino", models / "realesr-animevideov3.openvino")
    s3, dynamodb, sqs = (client(aws_url, name) for name in ("s3", "dynamodb", "sqs"))
    s3.create_bucket(Bucket="zip-results")
    queue = create_job_resources(dynamodb, sqs, "zip-jobs", "zip-work")
    photo = codec.encode(load_photo("astronaut.png")[:60, :80], "png")
    request = json.dumps({"img": base64.b64encode(photo).decode(), "scale": 4})
    events = {
        "plain": api_gateway_event(request),
        "base64": api_gateway_event(request, base64_body=True),
        "job": api_gateway_event(request, path="/jobs", resource="/jobs"),
        "face": api_gateway_event(json.dumps({"img": base64.b64encode(photo).decode(), "face": True})),
    }
    env = {
        **aws_env,
        "SUPERRES_MODEL_X4": "realesr-animevideov3",
        "SUPERRES_OUTPUT_BUCKET": "zip-results",
        "SUPERRES_JOB_TABLE": "zip-jobs",
        "SUPERRES_JOB_QUEUE_URL": queue,
    }
    answers = run_cpu_service(tmp_path / "code", models, events, queue, env)
    for name in ("plain", "base64"):
        assert answers[name]["statusCode"] == 200, answers[name]
        body = json.loads(answers[name]["body"])
        info = codec.probe(base64.b64decode(body["result"]))
        assert (info.width, info.height, body["model"]) == (320, 240, "realesr-animevideov3")
    # FaceEnhancement off (the stack's default): face restoration is refused, not ignored.
    assert answers["face"]["statusCode"] == 400
    assert "face enhancement is not enabled" in json.loads(answers["face"]["body"])["message"]
    job = json.loads(answers["job"]["body"])
    assert answers["job"]["statusCode"] == 202, job
    assert answers["sqs"] == {"batchItemFailures": []}
    record = dynamodb.get_item(TableName="zip-jobs", Key={"id": {"S": job["id"]}})["Item"]
    assert record["state"]["S"] == "succeeded", record
    stored = s3.get_object(Bucket="zip-results", Key=f"results/{job['id']}.png")["Body"].read()
    stored_info = codec.probe(stored)
    assert (stored_info.width, stored_info.height) == (320, 240)


@pytest.fixture(scope="module")
def face_networks(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The networks folder of a release built with GFPGAN: ``build_networks`` (what ``build``
    runs on the verified weights) on random GFPGANv1Clean weights in the official layout (no
    GFPGAN weights exist here), beside the release's own conversions (YuNet among them)."""
    out = tmp_path_factory.mktemp("face-release")
    gfpgan = write_random_gfpgan(out / "GFPGANv1.4.pth")
    package.build_networks(out, {"GFPGANv1.4": gfpgan})
    networks = built / "regional-s3-assets" / "networks"
    shutil.copytree(networks, out / "networks", dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
    return out / "networks"


def test_cpu_service_zip_restores_faces_through_api_and_sqs(
    built: Path, face_networks: Path, tmp_path: Path, aws_url: str, aws_env: dict[str, str]
) -> None:
    """FaceEnhancement on: the zip alone (no torch, no OpenCV) restores the astronaut's face
    with the released conversions of GFPGAN and YuNet (OpenVINO IR), through an API Gateway
    event and through the job worker."""
    unpack_cpu_service(built, tmp_path / "code")
    models = tmp_path / "models"
    for name in ("realesr-animevideov3", "GFPGANv1.4", "YuNet"):
        shutil.copytree(face_networks / f"{name}.openvino", models / f"{name}.openvino")
    s3, dynamodb, sqs = (client(aws_url, name) for name in ("s3", "dynamodb", "sqs"))
    s3.create_bucket(Bucket="face-results")
    queue = create_job_resources(dynamodb, sqs, "face-jobs", "face-work")
    portrait = np.ascontiguousarray(load_photo("astronaut.png")[10:250, 110:390])  # 280x240, the face in it
    photo = codec.encode(portrait, "png")
    request = json.dumps({"img": base64.b64encode(photo).decode(), "scale": 2, "face": True})
    plain = json.dumps({"img": base64.b64encode(photo).decode(), "scale": 2})
    events = {
        "face": api_gateway_event(request),
        "plain": api_gateway_event(plain),
        "job": api_gateway_event(request, path="/jobs", resource="/jobs"),
    }
    env = {
        **aws_env,
        "SUPERRES_MODEL_X4": "realesr-animevideov3",
        "SUPERRES_FACE_ENABLED": "true",
        "SUPERRES_OUTPUT_BUCKET": "face-results",
        "SUPERRES_JOB_TABLE": "face-jobs",
        "SUPERRES_JOB_QUEUE_URL": queue,
    }
    answers = run_cpu_service(tmp_path / "code", models, events, queue, env)
    assert answers["face"]["statusCode"] == 200, answers["face"]
    face = json.loads(answers["face"]["body"])
    assert (face["faces"], face["width"], face["height"]) == (1, 560, 480)
    restored, _ = codec.decode(base64.b64decode(face["result"]))
    assert answers["plain"]["statusCode"] == 200, answers["plain"]
    body = json.loads(answers["plain"]["body"])
    assert body["faces"] == 0
    upscaled, _ = codec.decode(base64.b64decode(body["result"]))
    # Only around the face does the picture change (random weights paint noise there), and it does.
    changed = (restored != upscaled).any(axis=2)
    rows, columns = np.nonzero(changed)
    assert changed.mean() > 0.05 and changed[:40].sum() == 0 and changed[:, -40:].sum() == 0
    assert rows.min() > 40 and columns.max() < 520
    job = json.loads(answers["job"]["body"])
    assert answers["job"]["statusCode"] == 202, job
    assert answers["sqs"] == {"batchItemFailures": []}
    record = dynamodb.get_item(TableName="face-jobs", Key={"id": {"S": job["id"]}})["Item"]
    assert record["state"]["S"] == "succeeded", record
    stored, _ = codec.decode(s3.get_object(Bucket="face-results", Key=f"results/{job['id']}.png")["Body"].read())
    assert np.array_equal(stored, restored)  # the worker computes the same picture


@pytest.mark.parametrize("artifact", ["sagemaker-gpu-model.tar.gz", "sagemaker-neuron-model.tar.gz"])
def test_model_artifacts_hold_the_verified_weights(built: Path, artifact: str) -> None:
    """The weights at the root (/opt/ml/model/<file>); the code under code/
    (tests/test_sagemaker_artifact.py and tests/test_sagemaker_neuron.py serve them)."""
    store = ModelStore(SHARED / "models")
    expected = {store.path(package.get_spec(name)).name: store.path(package.get_spec(name)) for name in MODELS}
    path = built / "regional-s3-assets" / artifact
    header = path.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[3] & 0x08 == 0, "gzip must carry no file name"
    assert header[4:8] == b"\0\0\0\0", "gzip must carry no mtime"
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert all((m.mtime, m.uid, m.gid, m.uname) == (EPOCH, 0, 0, "") for m in members)
        weights = [m for m in members if "/" not in m.name]
        assert [m.name for m in weights] == sorted(expected)
        code = {m.name.split("/")[1] for m in members if "/" in m.name}
        assert code == {"inference.py", "superres", "lib"}
        for member in weights:
            assert member.mode == 0o644
            content = archive.extractfile(member)
            assert content is not None, f"{member.name} is not a regular file"
            digest = hashlib.sha256(content.read()).hexdigest()
            assert digest == sha256_of(expected[member.name])


def test_second_build_is_byte_identical(built: Path, tmp_path: Path) -> None:
    result = run_build(tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = tree(built), tree(tmp_path)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (["--models", "GFPGANv1.4"], {}, "model GFPGANv1.4 is not in"),
        (["--models", "NoSuchNet"], {}, "unknown model 'NoSuchNet'"),
        ([], {"SOURCE_DATE_EPOCH": "yesterday"}, "SOURCE_DATE_EPOCH must be an integer"),
    ],
)
def test_build_refuses_bad_input_clearly(tmp_path: Path, extra: list[str], env: dict[str, str], message: str) -> None:
    result = run_build(tmp_path, *extra, env=env)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "regional-s3-assets").exists() or not list((tmp_path / "regional-s3-assets").iterdir())


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["Bad_Bucket", SOLUTION, VERSION], "not a valid S3 bucket name"),
        ([PREFIX, "Super Res", VERSION], "solution name"),
        ([PREFIX, SOLUTION, "v1/0"], "version"),
    ],
)
def test_build_refuses_bad_names(tmp_path: Path, names: list[str], message: str) -> None:
    result = subprocess.run(
        ["bash", str(DEPLOYMENT / "build-s3-dist.sh"), *names, "--out", str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_build_refuses_the_ecr_account_it_no_longer_takes(tmp_path: Path) -> None:
    """The fourth argument of old (the account whose ECR held the kit's image) is a usage error,
    not ignored: no stack runs an image of the kit's any more."""
    result = subprocess.run(
        [
            "bash",
            str(DEPLOYMENT / "build-s3-dist.sh"),
            PREFIX,
            SOLUTION,
            VERSION,
            "123456789012",
            "--out",
            str(tmp_path),
        ],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "unexpected extra argument (123456789012)" in result.stderr
    assert not (tmp_path / "global-s3-assets").exists()


def test_build_without_arguments_prints_usage() -> None:
    result = subprocess.run(
        ["bash", str(DEPLOYMENT / "build-s3-dist.sh")], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2 and "usage:" in result.stderr


# ---------------------------------------------------------------- quick-create links

RELEASE = links.Release("superres-releases", SOLUTION, VERSION, china_global_bucket="superres-releases-cn")


@pytest.mark.parametrize("region", sorted(REGIONS))
@pytest.mark.parametrize("variant", sorted(links.VARIANTS))
def test_quick_create_url_opens_the_right_console_and_template(region: str, variant: str, asset_names: Path) -> None:
    url = urlsplit(links.quick_create_url(RELEASE, region, variant))
    china = region.startswith("cn-")
    assert url.scheme == "https"
    assert url.netloc == (f"{region}.console.amazonaws.cn" if china else "console.aws.amazon.com")
    assert url.path == "/cloudformation/home" and parse_qs(url.query) == {"region": [region]}
    route, _, fragment_query = url.fragment.partition("?")
    assert route == "/stacks/quickcreate"
    query = {k: v[0] for k, v in parse_qs(fragment_query).items()}
    assert set(query) == {"templateURL", "stackName"}
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", query["stackName"])
    template = urlsplit(query["templateURL"])
    assert template.scheme == "https"
    assert template.netloc == (
        "superres-releases-cn.s3.cn-north-1.amazonaws.com.cn" if china else "superres-releases.s3.amazonaws.com"
    )
    assert template.path == f"/{SOLUTION}/{VERSION}/{links.VARIANTS[variant][1]}"
    # The key is the one publish uploads the template to.
    uploads = publish.plan(asset_names, PREFIX, SOLUTION, VERSION, [region], "superres-releases")
    assert template.path.lstrip("/") in {u.key for u in uploads if u.bucket == "superres-releases"}


@pytest.fixture(scope="module")
def asset_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An asset folder with the build's file names (publish.plan reads names only)."""
    base = tmp_path_factory.mktemp("names")
    for folder, names in (("global-s3-assets", GLOBAL_ASSETS), ("regional-s3-assets", REGIONAL_ASSETS)):
        (base / folder).mkdir()
        for name in names:
            (base / folder / name).write_text("x")
    return base


def published_templates() -> links.Published:
    """The committed templates as a release publishes them, in both partitions."""
    bodies = {
        variant: json.loads(build.substitute((ROOT / "templates" / package.TEMPLATES[asset]).read_text()))
        for variant, (_, asset, _) in links.VARIANTS.items()
    }
    return {"aws": bodies, "aws-cn": bodies}


def table_rows(text: str) -> dict[str, list[str]]:
    """Region -> its cells, one per variant in links.VARIANTS's order."""
    return {
        line.split("`")[1]: [cell.strip() for cell in line.split("|")[2:-1]]
        for line in text.splitlines()
        if line.startswith("| ") and "`" in line
    }


def rule_regions(body: dict[str, Any]) -> set[str]:
    """Every Region one of a template's rules names (evaluated apart from the links code)."""
    return {
        region
        for rule in body.get("Rules", {}).values()
        for assertion in rule["Assertions"]
        for region in assertion["Assert"]["Fn::Contains"][0]
    }


def test_links_only_where_the_template_deploys() -> None:
    """Lambda and GPU in every region of the table; Inferentia only where its rules allow a
    family (in the China regions, neither Inf1 nor Inf2 has AWS's Neuron image and the instances)."""
    templates = published_templates()
    rows = table_rows(links.table(RELEASE, templates))
    assert set(rows) == set(REGIONS)
    inferentia = rule_regions(templates["aws"]["inferentia"])
    assert inferentia and not any(region.startswith("cn-") for region in inferentia)
    for region, (lambda_cell, gpu_cell, inferentia_cell) in rows.items():
        assert lambda_cell.startswith("[launch](") and gpu_cell.startswith("[launch](")
        assert inferentia_cell.startswith("[launch](") == (region in inferentia), region
        if region not in inferentia:
            assert inferentia_cell == "not offered"
    # Where the default instance type deploys, the link presets nothing.
    assert "param_" not in links.table(RELEASE, templates)


def test_a_link_presets_a_family_the_region_has() -> None:
    """A region the default family (Inf2) is not offered in, but Inf1 is, gets a link that
    preselects ml.inf1.xlarge; a region with neither, no link."""
    templates = published_templates()
    body = json.loads(json.dumps(templates["aws"]["inferentia"]))
    regions = body["Rules"]["Inf2Region"]["Assertions"][0]["Assert"]["Fn::Contains"][0]
    regions.remove("us-west-2")
    templates["aws"]["inferentia"] = body
    rows = table_rows(links.table(RELEASE, templates, {"us-west-2": "US West (Oregon)", "us-west-1": "N. California"}))
    query = parse_qs(
        urlsplit(rows["us-west-2"][2].removeprefix("[launch](").removesuffix(")")).fragment.partition("?")[2]
    )
    assert query["param_deployInstanceType"] == ["ml.inf1.xlarge"]
    assert rows["us-west-1"][2] == "not offered"


def test_rules_the_evaluator_does_not_know_fail_loudly() -> None:
    """A rule function or a reference the links code cannot evaluate is an error, never a link
    to a stack that might refuse itself."""
    unknown = {"Rules": {"R": {"Assertions": [{"Assert": {"Fn::EachMemberIn": [[], []]}, "AssertDescription": "d"}]}}}
    with pytest.raises(ValueError, match="Fn::EachMemberIn is not known"):
        rules.launch_parameters(unknown, "us-east-1")
    partition = {
        "Rules": {
            "R": {
                "Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws"]}, "AssertDescription": "d"}]
            }
        }
    }
    with pytest.raises(ValueError, match="AWS::Partition, which has no value"):
        rules.launch_parameters(partition, "us-east-1")


def test_readme_links_to_no_bucket_the_project_does_not_own() -> None:
    """No release is published by the project: README's block holds no launch link at all."""
    block = links.readme_table((ROOT / "README.md").read_text())
    assert "[launch](" not in block and "s3." not in block
    assert "publish your own" in block.lower()


# ---------------------------------------------------------------- moto server (+ GetUsage)


class UsageCounts:
    """What API Gateway would have counted per key today; the test server reports it."""

    def __init__(self) -> None:
        self.today: dict[str, int] = {}


@pytest.fixture(scope="module")
def usage_counts() -> UsageCounts:
    return UsageCounts()


@pytest.fixture(scope="module")
def aws_url(usage_counts: UsageCounts) -> Iterator[str]:
    """moto in server mode on 127.0.0.1, plus API Gateway's GetUsage, which moto lacks."""
    from moto.apigateway.models import apigateway_backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    moto_app = DomainDispatcherApplication(create_backend_app)
    usage_path = re.compile(r"/usageplans/([^/]+)/usage")

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        found = usage_path.fullmatch(request.path)
        if request.method != "GET" or not found:
            return moto_app(environ, start_response)
        signed = re.search(r"/(\w\w-\w+-\d)/apigateway/", request.headers.get("Authorization", ""))
        assert signed, "GetUsage must be SigV4-signed for a region"
        region = signed.group(1)
        backend = apigateway_backends[DEFAULT_ACCOUNT_ID][region]
        plan = backend.get_usage_plan(found.group(1))
        limit = int(plan.quota["limit"]) if plan.quota else None
        start = date.fromisoformat(request.args["startDate"])
        end = date.fromisoformat(request.args["endDate"])
        key_ids = (
            [request.args["keyId"]]
            if "keyId" in request.args
            else [k.id for k in backend.get_usage_plan_keys(plan.id, None)]
        )
        items = {}
        for key_id in key_ids:
            rows = []
            for offset in range((end - start).days + 1):
                used = usage_counts.today.get(key_id, 0) if start + timedelta(days=offset) == end else 0
                rows.append([used, (limit - used) if limit is not None else 0])
            items[key_id] = rows
        # API Gateway names the map "values" on the wire (botocore: items).
        body = {"usagePlanId": plan.id, "startDate": str(start), "endDate": str(end), "values": items}
        return Response(json.dumps(body), content_type="application/json")(environ, start_response)

    with running(make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)) as url:
        yield url


@pytest.fixture()
def aws_env(aws_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for the commands: boto3 sends every call to the moto server."""
    env = {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return env


def client(aws_url: str, service: str, region: str = REGION) -> Any:
    return boto3.client(
        service, endpoint_url=aws_url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def make_bucket(aws_url: str, name: str, region: str) -> None:
    s3 = client(aws_url, "s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})


# ---------------------------------------------------------------- publish


@pytest.fixture(scope="module")
def published(built: Path, aws_url: str) -> Path:
    """The built release in moto: global bucket and two regions (what deploy tests launch from)."""
    make_bucket(aws_url, PREFIX, REGION)
    for region in (REGION, "eu-west-1"):
        make_bucket(aws_url, f"{PREFIX}-{region}", region)
    return built


def invoke_publish(assets: Path, *args: str) -> Any:
    return CliRunner().invoke(package.main, ["publish", PREFIX, SOLUTION, VERSION, "--assets", str(assets), *args])


def asset_keys(folder: Path) -> set[str]:
    """Every file of a built assets folder by its key below the release prefix."""
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_publish_uploads_every_asset_once(published: Path, aws_url: str, aws_env: dict[str, str]) -> None:
    result = invoke_publish(published, "--region", REGION, "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    s3 = client(aws_url, "s3")
    regional = asset_keys(published / "regional-s3-assets")
    # The zips and artifacts, and the converted networks in their folders.
    assert regional > REGIONAL_ASSETS and "networks/manifest.json" in regional
    expected = {PREFIX: GLOBAL_ASSETS, f"{PREFIX}-{REGION}": regional, f"{PREFIX}-eu-west-1": regional}
    for bucket, names in expected.items():
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert listed == {f"{SOLUTION}/{VERSION}/{n}" for n in names}
        folder = published / ("global-s3-assets" if bucket == PREFIX else "regional-s3-assets")
        for name in names:
            stored = s3.get_object(Bucket=bucket, Key=f"{SOLUTION}/{VERSION}/{name}")
            assert stored["Body"].read() == (folder / name).read_bytes()
            assert stored["Metadata"]["sha256"] == sha256_of(folder / name)
    total = len(GLOBAL_ASSETS) + 2 * len(regional)
    assert f"{total} uploaded" in result.output
    again = invoke_publish(published, "--region", REGION, "--region", "eu-west-1")
    assert again.exit_code == 0 and f"0 uploaded, {total} already there" in again.output


def test_publish_never_changes_a_released_object(
    published: Path, aws_url: str, aws_env: dict[str, str], tmp_path: Path
) -> None:
    assert invoke_publish(published, "--region", REGION).exit_code == 0
    changed = tmp_path / "assets"
    shutil.copytree(published / "global-s3-assets", changed / "global-s3-assets")
    shutil.copytree(published / "regional-s3-assets", changed / "regional-s3-assets")
    (changed / "regional-s3-assets" / "efs-model-stager.zip").write_bytes(b"other bytes")
    refused = invoke_publish(changed, "--region", REGION)
    assert refused.exit_code == 1 and "already published with other bytes" in refused.output
    forced = invoke_publish(changed, "--region", REGION, "--overwrite")
    assert forced.exit_code == 0, forced.output
    key = f"{SOLUTION}/{VERSION}/efs-model-stager.zip"
    assert client(aws_url, "s3").get_object(Bucket=f"{PREFIX}-{REGION}", Key=key)["Body"].read() == b"other bytes"
    restored = invoke_publish(published, "--region", REGION, "--overwrite")
    assert restored.exit_code == 0 and "1 uploaded" in restored.output


def test_publish_to_the_china_partition(built: Path, aws_url: str, aws_env: dict[str, str]) -> None:
    make_bucket(aws_url, "superres-cn", "cn-north-1")
    for region in ("cn-north-1", "cn-northwest-1"):
        make_bucket(aws_url, f"superres-cn-{region}", region)
    result = CliRunner().invoke(
        package.main,
        [
            "publish",
            "superres-cn",
            SOLUTION,
            VERSION,
            "--assets",
            str(built),
            "--region",
            "cn-north-1",
            "--region",
            "cn-northwest-1",
        ],
    )
    assert result.exit_code == 0, result.output
    listed = client(aws_url, "s3", "cn-northwest-1").list_objects_v2(Bucket="superres-cn-cn-northwest-1")["Contents"]
    assert {o["Key"].split("/", 2)[2] for o in listed} == asset_keys(built / "regional-s3-assets")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", "us-east-1", "--region", "cn-north-1"], "publish once per partition"),
        (["--region", "ap-northeast-1"], "does not exist in ap-northeast-1"),
        (["--region", "mars"], "is not an AWS region name"),
    ],
)
def test_publish_refuses_clearly(published: Path, aws_env: dict[str, str], args: list[str], message: str) -> None:
    result = invoke_publish(published, *args)
    assert result.exit_code == 1 and message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def invoke_links(*args: str) -> Any:
    return CliRunner().invoke(package.main, ["links", "--solution-name", SOLUTION, "--version", VERSION, *args])


def test_links_only_for_a_release_in_your_own_bucket(published: Path, aws_env: dict[str, str], tmp_path: Path) -> None:
    # A bucket name that is not among the caller's buckets: whoever owns it could serve anything.
    foreign = invoke_links("--global-bucket", "superres-kit")
    assert foreign.exit_code == 1 and "not one of your buckets" in foreign.output
    assert "[launch](" not in foreign.output and "Traceback" not in foreign.output
    # The caller's bucket, before the release is there.
    make_bucket(aws_env["AWS_ENDPOINT_URL"], "links-empty", REGION)
    empty = invoke_links("--global-bucket", "links-empty")
    assert empty.exit_code == 1 and "is not published" in empty.output
    # Published: the table, for the regions of the partition checked (no China rows without its account).
    assert invoke_publish(published, "--region", REGION).exit_code == 0
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{links.BEGIN}\nold\n{links.END}\nrest\n")
    written = invoke_links("--global-bucket", PREFIX, "--readme", str(readme))
    assert written.exit_code == 0, written.output
    block = links.readme_table(readme.read_text())
    assert block.count("[launch](") == 3 * 6 and "cn-north-1" not in block
    assert f"https%3A%2F%2F{PREFIX}.s3.amazonaws.com%2F{SOLUTION}%2F{VERSION}%2Flambda-efs.template" in block
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")


def test_publish_without_a_build(tmp_path: Path, aws_env: dict[str, str]) -> None:
    result = invoke_publish(tmp_path, "--region", REGION)
    assert result.exit_code == 1 and "run deployment/build-s3-dist.sh first" in result.output


# ---------------------------------------------------------------- superres stack


def superres(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=input)


def template_url(asset: str) -> str:
    return f"https://{PREFIX}.s3.amazonaws.com/{SOLUTION}/{VERSION}/{asset}"


@pytest.fixture(scope="module")
def released(published: Path, aws_url: str) -> Path:
    """The release in moto's S3, as the quick-create links and deploy use it."""
    s3 = client(aws_url, "s3")
    for folder, bucket in (("global-s3-assets", PREFIX), ("regional-s3-assets", f"{PREFIX}-{REGION}")):
        for key in asset_keys(published / folder):
            s3.put_object(
                Bucket=bucket, Key=f"{SOLUTION}/{VERSION}/{key}", Body=(published / folder / key).read_bytes()
            )
    return published


def test_deploy_creates_updates_and_deletes_a_stack(released: Path, aws_url: str, aws_env: dict[str, str]) -> None:
    created = superres("stack", "deploy", "gpu", "--template", template_url("sagemaker-gpu.template"), "--poll", "0.1")
    assert created.exit_code == 0, created.output
    lines = created.output.splitlines()
    assert lines[0] == "creating stack superres-gpu ..."
    # (moto records the stack's own events, not one per resource as CloudFormation does.)
    assert any(re.search(r"CREATE_COMPLETE\s+AWS::CloudFormation::Stack\s+superres-gpu$", line) for line in lines)
    assert "superres-gpu: CREATE_COMPLETE" in lines
    outputs = lines[lines.index("superres-gpu: CREATE_COMPLETE") + 1 :]
    assert outputs[0].startswith("  aikitsInvokeURLresolution: https://") and outputs[0].endswith("/resolution")
    cfn = client(aws_url, "cloudformation")
    # Every output the stack has, one a line (moto leaves out those of resources it skips, e.g. ApiKeyId).
    described = cfn.describe_stacks(StackName="superres-gpu")["Stacks"][0]["Outputs"]
    assert sorted(outputs) == sorted(f"  {o['OutputKey']}: {o['OutputValue']}" for o in described)
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName="superres-gpu")["StackResources"]
        if "LogicalResourceId" in r and "PhysicalResourceId" in r  # (moto lists skipped resources without them)
    }
    function = client(aws_url, "lambda").get_function(FunctionName=resources["Function"])
    # The function's code is the invoke-endpoint.zip this release built and published.
    assert (
        function["Configuration"]["CodeSize"]
        == (released / "regional-s3-assets" / "invoke-endpoint.zip").stat().st_size
    )

    updated = superres(
        "stack",
        "deploy",
        "gpu",
        "--template",
        template_url("sagemaker-gpu.template"),
        "--poll",
        "0.1",
        "-p",
        "MinInstances=2",
    )
    assert updated.exit_code == 0, updated.output
    assert (
        "updating stack superres-gpu (CREATE_COMPLETE) ..." in updated.output
        and "superres-gpu: UPDATE_COMPLETE" in updated.output
    )
    parameters = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in cfn.describe_stacks(StackName="superres-gpu")["Stacks"][0]["Parameters"]
    }
    assert parameters["MinInstances"] == "2" and parameters["deployInstanceType"] == "ml.g4dn.xlarge"

    # A parameter not given keeps its value, also one set by an earlier deploy.
    again = superres(
        "stack",
        "deploy",
        "gpu",
        "--template",
        template_url("sagemaker-gpu.template"),
        "--poll",
        "0.1",
        "-p",
        "MaxInstances=3",
    )
    assert again.exit_code == 0, again.output
    parameters = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in cfn.describe_stacks(StackName="superres-gpu")["Stacks"][0]["Parameters"]
    }
    assert (parameters["MinInstances"], parameters["MaxInstances"]) == ("2", "3")

    shown = superres("stack", "outputs", "superres-gpu")
    assert shown.exit_code == 0 and shown.output.startswith("aikitsInvokeURLresolution: https://")

    refused = superres("stack", "delete", "superres-gpu", input="n\n")
    assert refused.exit_code == 1 and cfn.describe_stacks(StackName="superres-gpu")["Stacks"]
    deleted = superres("stack", "delete", "superres-gpu", "--yes", "--poll", "0.1")
    assert deleted.exit_code == 0, deleted.output
    assert "superres-gpu: DELETE_COMPLETE" in deleted.output
    gone = superres("stack", "outputs", "superres-gpu")
    assert gone.exit_code == 1 and "no stack named superres-gpu" in gone.output


def test_deploy_says_when_there_is_nothing_to_change(aws_env: dict[str, str], tmp_path: Path) -> None:
    # (A small template: moto recognises "no updates" only when every parameter is given.)
    template = tmp_path / "small.template"
    template.write_text(
        json.dumps(
            {
                "Parameters": {"Name": {"Type": "String"}},
                "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {"Name": {"Value": {"Ref": "Name"}}},
            }
        )
    )
    args = (
        "stack",
        "deploy",
        "lambda",
        "--template",
        str(template),
        "--stack-name",
        "superres-small",
        "--poll",
        "0.1",
        "-p",
        "Name=a",
    )
    assert superres(*args).exit_code == 0
    unchanged = superres(*args)
    assert unchanged.exit_code == 0, unchanged.output
    assert "no changes" in unchanged.output and "  Name: a" in unchanged.output


def test_deploy_uploads_a_large_template_file(released: Path, aws_url: str, aws_env: dict[str, str]) -> None:
    template = str(released / "global-s3-assets" / "sagemaker-inferentia.template")
    inline = superres("stack", "deploy", "inferentia", "--template", template)
    assert inline.exit_code == 1 and "pass --template-bucket" in inline.output
    deployed = superres(
        "stack",
        "deploy",
        "inferentia",
        "--template",
        template,
        "--template-bucket",
        PREFIX,
        "--poll",
        "0.1",
        "--stack-name",
        "superres-inferentia-file",
        "-p",
        "deployInstanceType=ml.inf1.2xlarge",
    )
    assert deployed.exit_code == 0, deployed.output
    assert "superres-inferentia-file: CREATE_COMPLETE" in deployed.output
    key = "superres-templates/superres-inferentia-file/sagemaker-inferentia.template"
    assert client(aws_url, "s3").get_object(Bucket=PREFIX, Key=key)["Body"].read() == Path(template).read_bytes()


class CreateReturned:
    """A CloudFormation client that tells when ``create_stack`` has returned: moto creates every
    resource within that call, a custom resource included, which from then on waits for its
    answer. An answer that comes while moto is still creating the others is checked against an
    unfinished stack and never completes it."""

    def __init__(self, cfn: Any) -> None:
        self.cfn = cfn
        self.returned = threading.Event()

    def create_stack(self, **request: Any) -> Any:
        created = self.cfn.create_stack(**request)
        self.returned.set()
        return created

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cfn, name)


def test_deploy_waits_for_the_model_staging_and_reports_a_timeout(
    released: Path, aws_url: str, aws_env: dict[str, str]
) -> None:
    # moto creates everything but the custom resource, which waits for the stager's answer.
    late = superres(
        "stack",
        "deploy",
        "lambda",
        "--template",
        template_url("lambda-efs.template"),
        "--stack-name",
        "superres-lambda-late",
        "--poll",
        "0.1",
        "--timeout",
        "1",
    )
    assert late.exit_code == 1
    assert "still CREATE_IN_PROGRESS after 1 s" in late.output
    assert re.search(r"CREATE_IN_PROGRESS\s+AWS::CloudFormation::Stack\s+superres-lambda-late", late.output)
    busy = superres(
        "stack",
        "deploy",
        "lambda",
        "--template",
        template_url("lambda-efs.template"),
        "--stack-name",
        "superres-lambda-late",
    )
    assert busy.exit_code == 1 and "is busy (CREATE_IN_PROGRESS)" in busy.output

    # A deploy that is waiting completes when the stager answers SUCCESS.
    cfn = CreateReturned(client(aws_url, "cloudformation"))
    log: list[str] = []
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = stack.deploy(
                cfn,
                "superres-lambda",
                {"TemplateURL": template_url("lambda-efs.template")},
                {},
                log=log.append,
                poll=0.1,
                timeout=60,
            )
        except stack.StackError as error:
            outcome["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    assert cfn.returned.wait(60)  # every resource created; the custom resource awaits its answer
    stack_id = cfn.describe_stacks(StackName="superres-lambda")["Stacks"][0]["StackId"]
    assert worker.is_alive() and log[0] == "creating stack superres-lambda ..."  # still waiting
    answer = {
        "Status": "SUCCESS",
        "StackId": stack_id,
        "RequestId": "r",
        "LogicalResourceId": "ModelFiles",
        "PhysicalResourceId": "efs-models-1",
        "Data": {"Files": "realesr-general-x4v3.pth"},
    }
    response = httpx.put(
        f"{aws_url}/cloudformation_{REGION}/cfnresponse",
        params={"stack": stack_id},
        content=json.dumps(answer),
        headers={"Host": f"cloudformation.{REGION}.amazonaws.com"},
    )
    assert response.status_code == 200
    worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].status == "CREATE_COMPLETE"
    assert outcome["result"].outputs["ModelFilesStaged"] == "realesr-general-x4v3.pth"
    assert any("CREATE_COMPLETE" in line and "superres-lambda" in line for line in log)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gpu", "--template", template_url("sagemaker-gpu.template"), "-p", "MinInstances"], "is not Key=Value"),
        (["gpu", "--template", "/no/such/file.template"], "neither an https:// URL nor a file"),
        (
            ["gpu", "--template", template_url("sagemaker-gpu.template"), "-p", "deployInstanceType=ml.t2.micro"],
            "CloudFormation refused",
        ),
        # (moto answers this one with an HTML 500 page; CloudFormation with a ValidationError.)
        (["gpu", "--template", template_url("no-such.template")], "CloudFormation"),
    ],
)
def test_deploy_refuses_bad_input_clearly(
    released: Path, aws_env: dict[str, str], args: list[str], message: str
) -> None:
    result = superres("stack", "deploy", *args, "--stack-name", "superres-refused", "--poll", "0.1")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_stack_commands_need_a_region(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    result = superres("stack", "outputs", "anything")
    assert result.exit_code == 1 and "no AWS region" in result.output


# ---------------------------------------------------------------- superres keys


@pytest.fixture(scope="module")
def plan_stack(aws_url: str) -> str:
    """A usage plan with a daily quota, and a stack whose UsagePlanId output names it.

    (moto's CloudFormation skips AWS::ApiGateway::UsagePlan, so the kit's own stacks in
    moto have no real plan behind that output.)"""
    apigw = client(aws_url, "apigateway")
    plan = apigw.create_usage_plan(
        name="customers", quota={"limit": 100, "period": "DAY"}, throttle={"rateLimit": 5.0, "burstLimit": 10}
    )
    body = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"UsagePlanId": {"Value": plan["id"]}},
    }
    client(aws_url, "cloudformation").create_stack(StackName="superres-customers", TemplateBody=json.dumps(body))
    return plan["id"]


def test_keys_issue_list_usage_revoke(
    plan_stack: str, aws_url: str, aws_env: dict[str, str], usage_counts: UsageCounts
) -> None:
    apigw = client(aws_url, "apigateway")
    issued = superres("keys", "issue", "Acme Corp", "--stack", "superres-customers")
    assert issued.exit_code == 0, issued.output
    fields = dict(re.findall(r"^(key id|customer|plan|value):\s+(.+)$", issued.output, re.M))
    acme = fields["key id"]
    assert fields["customer"] == "Acme Corp" and fields["plan"] == plan_stack
    key = apigw.get_api_key(apiKey=acme, includeValue=True)
    assert key["value"] == fields["value"] and key["enabled"] is True
    assert key["tags"] == {api_keys.CUSTOMER_TAG: "Acme Corp"}
    assert acme in {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan_stack)["items"]}

    beta = superres("keys", "issue", "beta-42", "--usage-plan-id", plan_stack)
    assert beta.exit_code == 0, beta.output
    beta_match = re.search(r"^key id:\s+(\S+)$", beta.output, re.M)
    assert beta_match, beta.output
    beta_id = beta_match.group(1)

    listed = superres("keys", "list", "--stack", "superres-customers")
    assert listed.exit_code == 0 and f"usage plan {plan_stack}: 2 key(s)" in listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines()[1:]}
    assert set(rows) == {acme, beta_id}
    assert "enabled" in rows[acme] and rows[acme].endswith("Acme Corp")

    usage_counts.today[acme] = 42
    usage = superres("keys", "usage", "--usage-plan-id", plan_stack, "--days", "2")
    assert usage.exit_code == 0, usage.output
    assert "quota 100 requests per day" in usage.output
    assert f"{acme}: 42 requests in 2 day(s)" in usage.output
    assert re.search(rf"  {date.today()}  used\s+42  remaining 58", usage.output)
    one = superres("keys", "usage", "--usage-plan-id", plan_stack, "--key-id", beta_id)
    assert one.exit_code == 0 and f"{beta_id}: 0 requests in 1 day(s)" in one.output and acme not in one.output

    disabled = superres("keys", "revoke", acme, "--stack", "superres-customers")
    assert disabled.exit_code == 0 and f"{acme}: disabled" in disabled.output
    assert apigw.get_api_key(apiKey=acme)["enabled"] is False
    assert "disabled" in superres("keys", "list", "--usage-plan-id", plan_stack).output

    deleted = superres("keys", "revoke", beta_id, "--usage-plan-id", plan_stack, "--delete")
    assert deleted.exit_code == 0 and f"{beta_id}: deleted" in deleted.output
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_api_key(apiKey=beta_id)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["revoke", "nosuchkey", "--usage-plan-id", "PLAN"], 1, "is not on usage plan"),
        (["issue", "   ", "--usage-plan-id", "PLAN"], 1, "give 1-128 printable characters"),
        (["issue", "x", "--usage-plan-id", "nosuchplan"], 1, "API Gateway refused"),
        (["list", "--stack", "superres-nothing"], 1, "no stack named superres-nothing"),
        (
            ["list", "--stack", "superres-customers", "--usage-plan-id", "PLAN"],
            2,
            "exactly one of --stack and --usage-plan-id",
        ),
        (["list"], 2, "exactly one of --stack and --usage-plan-id"),
        (["usage", "--usage-plan-id", "PLAN", "--days", "0"], 2, "0 is not in the range"),
    ],
)
def test_keys_refuse_bad_input_clearly(
    plan_stack: str, aws_env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    result = superres("keys", *[plan_stack if a == "PLAN" else a for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_keys_need_a_kit_stack(aws_url: str, aws_env: dict[str, str]) -> None:
    body = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
    client(aws_url, "cloudformation").create_stack(StackName="not-superres", TemplateBody=json.dumps(body))
    result = superres("keys", "list", "--stack", "not-superres")
    assert result.exit_code == 1 and "has no UsagePlanId output" in result.output
