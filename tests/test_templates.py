"""The three CloudFormation templates, checked offline.

- templates/build.py regenerates the committed templates byte for byte;
- cfn-lint (global and China regions) and checkov find nothing; every checkov skip has a
  written reason and is needed (the check fails on that resource without the skip);
- IAM is least-privilege (no wildcard actions, S3 and SageMaker scoped) and partition-neutral;
- the API definition matches the contract (openapi.yaml);
- each template is created as a stack in moto (server mode) and its wiring asserted through
  the service APIs moto emulates. moto's CloudFormation skips API Gateway stages, API keys,
  usage plans, models, request validators and gateway responses, CloudWatch alarms,
  Application Auto Scaling, SecurityGroupEgress, S3 bucket policies, a bucket's public access
  block and lifecycle rules, a table's TTL and SNS subscriptions, and it cannot run Lambda code without
  Docker: those are asserted from the parsed template instead.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import platform
import re
import subprocess
import sys
import urllib.parse
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import jsonschema
import pytest

from conftest import tool_in_own_venv
from repo_modules import load_script
from servers import moto_server
from superres.manifest import get_spec
from superres.service.contract import contract, schema

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("templates_build", ROOT / "templates" / "build.py")
assert _spec is not None and _spec.loader is not None
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

# moto announces each resource type its CloudFormation skips; the module docstring lists them.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")

KINDS = ["lambda", "gpu", "inferentia"]
REGION = "us-east-1"
#: The instance types each SageMaker stack offers (templates/README.md, Parameters), the first
#: as default: the AI Solution Kit deployment guide's, and Inf2 beside the guide's Inf1 (issue 15).
INSTANCE_TYPES = {
    "gpu": ["ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.g4dn.8xlarge"],
    "inferentia": ["ml.inf2.xlarge", "ml.inf2.8xlarge", "ml.inf1.xlarge", "ml.inf1.2xlarge", "ml.inf1.6xlarge"],
}
#: AllowedS3Buckets promises "up to 10 bucket names" (templates/README.md, and the
#: parameter's own description): the policy must have a slot for each.
PROMISED_ALLOWED_BUCKETS = 10


def raw(kind: str) -> str:
    return build.OUTPUTS[kind].read_text()


def template(kind: str) -> dict[str, Any]:
    return json.loads(raw(kind))


def filled(kind: str) -> str:
    return build.substitute(raw(kind))


def resources_of(body: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in body["Resources"].items() if res["Type"] == kind}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def policy_statements(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in body["Resources"].items():
        props = res.get("Properties", {})
        documents = []
        if res["Type"] == "AWS::IAM::Role":
            documents.append(props["AssumeRolePolicyDocument"])
            documents += [p["PolicyDocument"] for p in props.get("Policies", [])]
        elif res["Type"] == "AWS::IAM::Policy":
            documents.append(props["PolicyDocument"])
        elif res["Type"] == "AWS::EFS::FileSystem":
            documents.append(props["FileSystemPolicy"])
        for document in documents:
            for item in document["Statement"]:
                yield name, item


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- generation, lint, checkov


def test_committed_templates_are_what_build_py_generates() -> None:
    for path, text in build.render_all().items():
        assert path.read_text() == text, f"{path.name} is stale: run python templates/build.py"
    check = subprocess.run(
        [sys.executable, str(ROOT / "templates" / "build.py"), "--check"], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr.decode()


def test_placeholders_are_the_deployment_build_ones() -> None:
    for kind in KINDS:
        text = raw(kind)
        assert [p for p in build.PLACEHOLDERS if p in text] == list(build.PLACEHOLDERS)
        leftover = build.substitute(text).count("%%")
        assert leftover == 0
    body = template("lambda")
    stager = body["Resources"]["StagerFunction"]["Properties"]["Code"]
    assert stager["S3Bucket"] == {
        "Fn::Join": ["-", [{"Fn::FindInMap": ["Assets", "Source", "BucketPrefix"]}, {"Ref": "AWS::Region"}]]
    }
    assert body["Mappings"]["Assets"]["Source"]["KeyPrefix"] == "%%SOLUTION_NAME%%/%%VERSION%%"


@pytest.mark.parametrize("kind", KINDS)
def test_cfn_lint_finds_nothing(kind: str) -> None:
    from cfnlint.api import (  # type: ignore[import-untyped]  # cfn-lint ships no py.typed marker
        ManualArgs,
        lint,
    )

    # As deployed (placeholders filled: unfilled, they cannot match bucket/ARN patterns),
    # in a global region and both China regions.
    matches = lint(filled(kind), config=ManualArgs(regions=["us-east-1", "eu-west-1", "cn-north-1", "cn-northwest-1"]))
    assert [str(m) for m in matches] == []


def checkov_executable() -> str:
    # checkov pins boto3 1.35, which the project's pinned boto3 excludes: it lives in its
    # own virtual environment.
    return tool_in_own_venv("CHECKOV", "checkov", "checkov")


def run_checkov(directory: Path) -> dict[str, Any]:
    result = subprocess.run(
        [checkov_executable(), "-d", str(directory), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        # checkov exits 1 when a check fails, which the copy without skips is meant to show.
        check=False,
    )
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def checkov_skips(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (name, item["id"], item.get("comment", ""))
        for name, res in body["Resources"].items()
        for item in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


def scanned_templates() -> dict[str, dict[str, Any]]:
    """What checkov reads, by file name: each template as deployed, and the SageMaker ones once
    more with AsyncJobs on (checkov evaluates conditions on the parameter defaults, so it
    would never look at the resources behind AsyncJobs otherwise)."""
    found = {}
    for kind in KINDS:
        body = json.loads(filled(kind))
        found[build.OUTPUTS[kind].name] = body
        if "AsyncJobs" in body["Parameters"]:
            async_body = json.loads(filled(kind))
            async_body["Parameters"]["AsyncJobs"]["Default"] = "true"
            found[build.OUTPUTS[kind].name.replace(".template.json", "-async.template.json")] = async_body
    return found


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    as_built = tmp_path_factory.mktemp("checkov")
    stripped = tmp_path_factory.mktemp("checkov-no-skips")
    for name, body in scanned_templates().items():
        (as_built / name).write_text(json.dumps(body))
        for res in body["Resources"].values():
            res.get("Metadata", {}).pop("checkov", None)
        (stripped / name).write_text(json.dumps(body))
    return run_checkov(as_built), run_checkov(stripped)


def test_checkov_passes(checkov_reports: tuple[dict[str, Any], dict[str, Any]]) -> None:
    report, _ = checkov_reports
    failed = [
        (f["file_path"], f["resource"], f["check_id"], f["check_name"]) for f in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["passed"] > 50


def test_every_checkov_skip_has_a_reason_and_is_needed(checkov_reports: tuple[dict[str, Any], dict[str, Any]]) -> None:
    report, without_skips = checkov_reports
    failing = {
        (Path(f["file_path"]).name, f["resource"].split(".")[-1], f["check_id"])
        for f in without_skips["results"]["failed_checks"]
    }
    skipped = {
        (Path(f["file_path"]).name, f["resource"].split(".")[-1], f["check_id"])
        for f in report["results"]["skipped_checks"]
    }
    total = 0
    for name, body in scanned_templates().items():
        off = {key for key, res in body["Resources"].items() if res.get("Condition") == "UseAsyncJobs"}
        for resource, check, comment in checkov_skips(body):
            if resource in off and body["Parameters"].get("AsyncJobs", {}).get("Default") != "true":
                continue  # not deployed with the defaults: checked in the -async copy
            total += 1
            assert len(comment) >= 40, f"{name} {resource} {check}: the reason is missing or too short"
            assert (name, resource, check) in skipped, f"{name} {resource} {check}: checkov did not apply the skip"
            assert (name, resource, check) in failing, f"{name} {resource} {check}: not needed, remove it"
    assert total == len(report["results"]["skipped_checks"])


# ---------------------------------------------------------------- cfn-guard (AWS Control Tower rules)

GUARD_PACKAGE = ROOT / ".venv" / "cfn-guard" / "node_modules" / "@cdklabs" / "cdk-validator-cfnguard"
_CONTROL = re.compile(r"\[(CT\.[A-Z0-9.]+)\]")


def guard_paths() -> tuple[Path, Path]:
    """The cfn-guard binary for this machine and the Control Tower rules, as make install puts them."""
    binary = GUARD_PACKAGE / "bin" / "ubuntu" / platform.machine() / "cfn-guard"
    rules = GUARD_PACKAGE / "rules" / "control-tower" / "cfn-guard"
    if not (binary.exists() and rules.is_dir()):
        pytest.fail("cfn-guard is not installed: make install runs npm ci into .venv/cfn-guard")
    return binary, rules


def guard_findings(directory: Path) -> set[tuple[str, str, str]]:
    """(template file, rule, resource) of every finding of the Control Tower rules: guard reads
    every resource whatever its condition, so one pass covers AsyncJobs too. The rules do not
    read Metadata.guard.SuppressedRules; the tests apply them (guard_suppressions)."""
    binary, rules = guard_paths()
    result = subprocess.run(
        [
            *(str(binary), "validate", "--rules", str(rules), "--data", str(directory)),
            *("--output-format", "json", "--structured", "--show-summary", "none"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        # guard exits 19 when a rule fails, which the suppressed findings make it do.
        check=False,
    )
    assert result.returncode in (0, 19), result.stderr
    found = set()
    for report in json.loads(result.stdout):
        for failure in report.get("not_compliant") or []:
            rule = failure["Rule"]["name"]
            # Each check of the rule names the path it failed at: /Resources/<name>/...
            paths = {node["path"] for node in walk(failure) if isinstance(node, dict) and "path" in node}
            resources = {path.split("/")[2] for path in paths if str(path).startswith("/Resources/")}
            assert resources, f"{rule}: a finding outside Resources"
            found |= {(Path(report["name"]).name, rule, resource) for resource in resources}
    return found


def guard_suppressions(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(resource, rule) -> the written reason, from each resource's Metadata.guard."""
    found = {}
    for name, res in body["Resources"].items():
        guard = res.get("Metadata", {}).get("guard", {})
        for rule in guard.get("SuppressedRules", []):
            found[(name, rule)] = guard.get("Reasons", {}).get(rule, "")
    return found


@pytest.fixture(scope="module")
def guard_report(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str, str]]:
    folder = tmp_path_factory.mktemp("guard")
    for kind in KINDS:
        (folder / build.OUTPUTS[kind].name).write_text(filled(kind))
    return guard_findings(folder)


def test_cfn_guard_control_tower_rules_pass(guard_report: set[tuple[str, str, str]]) -> None:
    unsuppressed = sorted(
        (name, rule, resource)
        for name, rule, resource in guard_report
        if (resource, rule) not in guard_suppressions(template(next(k for k in KINDS if build.OUTPUTS[k].name == name)))
    )
    assert unsuppressed == []


def test_every_guard_suppression_has_a_reason_and_is_needed(guard_report: set[tuple[str, str, str]]) -> None:
    total = 0
    for kind in KINDS:
        name = build.OUTPUTS[kind].name
        for (resource, rule), reason in guard_suppressions(template(kind)).items():
            total += 1
            assert len(reason) >= 40, f"{name} {resource} {rule}: the reason is missing or too short"
            assert (name, rule, resource) in guard_report, f"{name} {resource} {rule}: not needed, remove it"
    assert total > 20


def test_guard_finds_what_the_fixes_fixed(tmp_path: Path) -> None:
    """The rules the templates now pass (bucket policy denies every action without TLS, the
    dead-letter queues say what they are, stage execution logging) fail on the old shapes."""
    body = json.loads(filled("gpu"))
    res = body["Resources"]
    res["OutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Action"] = [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    ]
    del res["JobEventsDeadLetterQueue"]["Properties"]["RedriveAllowPolicy"]
    del res["ApiStage"]["Properties"]["MethodSettings"][0]["LoggingLevel"]
    (tmp_path / "old.template.json").write_text(json.dumps(body))
    rules = {rule for _, rule, _ in guard_findings(tmp_path)}
    assert {
        "s3_bucket_policy_ssl_requests_only_check",
        "sqs_dlq_check",
        "api_gw_v1_execution_logging_enabled_check",
    } <= rules


# ---------------------------------------------------------------- IAM, partitions


@pytest.mark.parametrize("kind", KINDS)
def test_no_wildcard_actions_and_scoped_resources(kind: str) -> None:
    body = template(kind)
    allowed_star = {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
    }
    statements = list(policy_statements(body))
    assert statements
    for owner, item in statements:
        assert "NotAction" not in item and "NotResource" not in item, owner
        for action in as_list(item["Action"]):
            assert "*" not in action, f"{owner}: wildcard action {action}"
        if item.get("Resource") == "*":
            assert set(as_list(item["Action"])) <= allowed_star, f"{owner}: {item['Action']} on '*'"
            if "cloudwatch:PutMetricData" in item["Action"]:
                assert "cloudwatch:namespace" in json.dumps(item["Condition"])


def test_s3_read_only_on_allow_listed_buckets_and_the_mirror() -> None:
    for kind in KINDS:
        body = template(kind)
        readers = {owner for owner, item in policy_statements(body) if "s3:GetObject" in as_list(item["Action"])}
        expected = (
            {"AllowedBucketsPolicy", "StagerRole"} if kind == "lambda" else {"AllowedBucketsPolicy", "EndpointRole"}
        )
        # The functions read their own results (presigned URLs act with the signer's rights)
        # and, on the Lambda stack, the worker reads job inputs: the output bucket only.
        own = (
            {"FunctionRole", "WorkerRole"}
            if kind == "lambda"
            else {"FunctionRole", "AsyncEndpointPolicy", "JobEventsRole"}
        )
        assert readers == expected | own, kind
        for owner, item in policy_statements(body):
            if owner in own and "s3:GetObject" in as_list(item["Action"]):
                for resource in as_list(item["Resource"]):
                    assert resource["Fn::Sub"] in (
                        "${OutputBucket.Arn}/results/*",
                        "${OutputBucket.Arn}/jobs/*",
                        "${OutputBucket.Arn}/async-in/*",
                        "${OutputBucket.Arn}/async-out/*",
                        "${OutputBucket.Arn}/async-failed/*",
                    ), owner
        allowed = body["Resources"]["AllowedBucketsPolicy"]
        assert allowed["Condition"] == "HasBucket0"
        resources = allowed["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]
        assert len(resources) == PROMISED_ALLOWED_BUCKETS
        assert f"Up to {PROMISED_ALLOWED_BUCKETS} bucket names" in body["Parameters"]["AllowedS3Buckets"]["Description"]
        assert "arn:${AWS::Partition}:s3:::${Bucket}/*" in json.dumps(resources)
        # The function reads exactly the buckets its environment allow-lists.
        env = body["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
        assert env["SUPERRES_ALLOWED_S3_BUCKETS"]["Fn::If"][0] == "HasBucket0"
        if kind != "lambda":
            (statement,) = [
                s for o, s in policy_statements(body) if o == "EndpointRole" and "s3:GetObject" in s["Action"]
            ]
            assert statement["Resource"]["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${AssetBucket}/${KeyPrefix}/*"


@pytest.mark.parametrize("kind", ["gpu", "inferentia"])
def test_invoke_endpoint_only_on_the_stacks_endpoint(kind: str) -> None:
    body = template(kind)
    invokes = [(o, s) for o, s in policy_statements(body) if "sagemaker:InvokeEndpoint" in as_list(s["Action"])]
    assert invokes == [
        ("FunctionRole", {"Effect": "Allow", "Action": ["sagemaker:InvokeEndpoint"], "Resource": {"Ref": "Endpoint"}})
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_partition_neutral(kind: str) -> None:
    text = raw(kind)
    assert "arn:aws:" not in text and "arn:aws-cn:" not in text
    assert "amazonaws.com/" not in text and ".amazonaws.com.cn" not in text
    # Hosts are built with AWS::URLSuffix (amazonaws.com.cn in China).
    assert "execute-api.${AWS::Region}.${AWS::URLSuffix}" in text
    # The Lambda stack's code is zips in the regional asset bucket: no registry at all.
    assert ("dkr.ecr." in text) == (kind != "lambda")


# ---------------------------------------------------------------- parameters, outputs


@pytest.mark.parametrize("kind", KINDS)
def test_guide_parameters_outputs_and_console_groups(kind: str) -> None:
    body = template(kind)
    params = body["Parameters"]
    assert params["customStageName"]["Default"] == "prod"
    assert params["customAuthType"]["AllowedValues"] == ["AWS_IAM", "NONE"]
    assert params["customAuthType"]["Default"] == "AWS_IAM"
    if kind == "lambda":
        assert "deployInstanceType" not in params
    else:
        assert params["deployInstanceType"]["AllowedValues"] == INSTANCE_TYPES[kind]
        assert params["deployInstanceType"]["Default"] == INSTANCE_TYPES[kind][0]
        for name in ("MinInstances", "MaxInstances"):
            assert params[name]["Type"] == "Number"
    for name in (
        "UsagePlanRateLimit",
        "UsagePlanBurstLimit",
        "UsagePlanDailyQuota",
        "AllowedS3Buckets",
        "ModelName",
        "LogRetentionDays",
    ):
        assert name in params
    # Face enhancement on GPU (on by default) and Lambda (opt-in, its description says what it costs
    # there: its CPUs, EFS); the face networks are not compiled for Neuron, so Inferentia has none.
    if kind == "inferentia":
        assert "FaceEnhancement" not in params
    else:
        assert params["FaceEnhancement"]["Default"] == ("true" if kind == "gpu" else "false")
        assert ("325 MiB" in params["FaceEnhancement"]["Description"]) == (kind == "lambda")
    interface = body["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    assert sorted(grouped) == sorted(params), "every parameter in exactly one console group"
    assert set(interface["ParameterLabels"]) == set(params)
    assert all(p.get("Description") for p in params.values())
    outputs = body["Outputs"]
    invoke = [name for name in outputs if name.startswith("aikitsInvokeURL")]
    assert invoke == ["aikitsInvokeURLresolution"]
    assert outputs["aikitsInvokeURLresolution"]["Value"] == {
        "Fn::Sub": "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${ApiStage}/resolution"
    }
    assert outputs["ApiKeyId"]["Value"] == {"Ref": "ApiKey"}
    assert outputs["GetApiKeyCommand"]["Value"]["Fn::Sub"].startswith(
        "aws apigateway get-api-key --api-key ${ApiKey} --include-value --query value --output text"
    )
    for name in (
        "UsagePlanId",
        "IssueApiKeyCommand",
        "RevokeApiKeyCommand",
        "DashboardURL",
        "AccessLogGroupName",
        "FunctionName",
    ):
        assert name in outputs


def test_models_match_the_manifest() -> None:
    """The stacks offer the four x4 networks the README documents (the ones spandrel loads;
    RealESRGAN_x2plus is not offered: scale 2 is x4 then Lanczos), each with a checked OpenVINO
    plan, and the Lambda stack stages the chosen one from the release's converted networks."""
    from superres.manifest import MODELS

    x4_networks = ["RealESRGAN_x4plus", "realesr-general-x4v3", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3"]
    for kind in KINDS:
        assert template(kind)["Parameters"]["ModelName"]["AllowedValues"] == x4_networks, kind
    assert all(MODELS[name].scale == 4 and MODELS[name].openvino for name in x4_networks)
    staging = template("lambda")["Resources"]["ModelFiles"]["Properties"]
    # The face networks are staged only when FaceEnhancement is true, which also switches the service's face path.
    assert staging["Networks"] == {
        "Fn::If": ["FaceEnhancementOn", [{"Ref": "ModelName"}, "GFPGANv1.4", "YuNet"], [{"Ref": "ModelName"}]]
    }
    assert template("lambda")["Conditions"]["FaceEnhancementOn"] == {"Fn::Equals": [{"Ref": "FaceEnhancement"}, "true"]}
    for name in ("Function", "Worker"):
        environment = template("lambda")["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert environment["SUPERRES_FACE_ENABLED"] == {"Ref": "FaceEnhancement"}
    assert all(MODELS[name].openvino for name in ("GFPGANv1.4", "YuNet"))  # the release build converts them
    assert staging["ManifestKey"] == {
        "Fn::Join": ["/", [{"Fn::FindInMap": ["Assets", "Source", "KeyPrefix"]}, "networks/manifest.json"]]
    }
    assert staging["Bucket"] == template("lambda")["Resources"]["StagerFunction"]["Properties"]["Code"]["S3Bucket"]


def test_no_lambda_function_is_a_container_image() -> None:
    for kind in KINDS:
        for name, function in resources_of(template(kind), "AWS::Lambda::Function").items():
            props = function["Properties"]
            assert "PackageType" not in props and "ImageUri" not in props["Code"], f"{kind}: {name}"
            assert props["Runtime"] == "python3.12" and set(props["Code"]) == {"S3Bucket", "S3Key"}


# ---------------------------------------------------------------- API against the contract


@pytest.mark.parametrize("kind", KINDS)
def test_api_definition_matches_the_contract(kind: str) -> None:
    body = template(kind)
    res = body["Resources"]
    # Paths and methods: exactly those of the contract.
    paths = contract()["paths"]
    declared = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    methods = resources_of(body, "AWS::ApiGateway::Method")

    def full_path(name: str) -> str:
        resource = res[name]["Properties"]
        parent = resource["ParentId"]
        above = "" if parent == {"Fn::GetAtt": ["Api", "RootResourceId"]} else full_path(parent["Ref"])
        return above + "/" + resource["PathPart"]

    built = set()
    for method in methods.values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":
            continue  # CORS preflights: test_cors_from_the_template
        built.add((full_path(props["ResourceId"]["Ref"]), props["HttpMethod"]))
        operation = paths[full_path(props["ResourceId"]["Ref"])][props["HttpMethod"].lower()]
        assert props["OperationName"] == operation["operationId"]
        # Every method is keyed, authorised as chosen, and proxied to the function.
        assert props["ApiKeyRequired"] is True and props["AuthorizationType"] == {
            "Fn::If": ["UseIam", "AWS_IAM", "NONE"]
        }
        assert props["Integration"]["Type"] == "AWS_PROXY"
        # Bodies validated by the contract's model; the parameters it names, declared.
        assert ("RequestModels" in props) == ("requestBody" in operation)
        # API Gateway calls the query string "querystring".
        declared_parameters = {
            f"method.request.{'querystring' if p['in'] == 'query' else p['in']}.{p['name']}"
            for p in operation.get("parameters", [])
        }
        assert set(props.get("RequestParameters", {})) == declared_parameters
    assert built == declared
    # Each method may invoke the function through its own permission, and nothing else may.
    sources = {
        p["Properties"]["SourceArn"]["Fn::Sub"].split("${Api}/*/")[1]
        for p in resources_of(body, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert sources == {method + path.replace("{id}", "*") for path, method in declared}
    # The request model is the contract's request schema, as a draft-4 model.
    model = res["ResolutionRequestModel"]["Properties"]
    assert model["ContentType"] == "application/json"
    schema_body = dict(model["Schema"])
    assert schema_body.pop("$schema") == "http://json-schema.org/draft-04/schema#"
    assert schema_body.pop("title") == "ResolutionRequest"
    assert schema_body == schema("ResolutionRequest")
    jsonschema.Draft4Validator.check_schema(model["Schema"])
    validator = jsonschema.Draft4Validator(model["Schema"])
    assert validator.is_valid({"url": "https://example.com/a.jpg", "scale": 4})
    assert validator.is_valid({"img": "x", "scale": "1.5", "model": "RealESRGAN_x4plus", "format": "avif"})
    assert not validator.is_valid({"scale": 17, "img": "x"})
    assert not validator.is_valid({"scale": "2x", "img": "x"})
    assert not validator.is_valid({"scale": 2})
    # Raw and multipart bodies are binary to API Gateway (base64 in the proxy event), and so
    # is a raw image answer; JSON stays text, validated by the model above.
    assert res["Api"]["Properties"]["BinaryMediaTypes"] == [
        "image/*",
        "application/octet-stream",
        "multipart/form-data",
    ]
    # The POST method validates bodies against it.
    props = res["ResolutionMethod"]["Properties"]
    assert props["RequestModels"] == {"application/json": {"Ref": "ResolutionRequestModel"}}
    assert res[props["RequestValidatorId"]["Ref"]]["Properties"]["ValidateRequestBody"] is True
    # API Gateway's own errors (validation 400, 403, 429, 5xx) answer the contract's Error shape.
    error_schema = schema("Error")
    for gateway in resources_of(body, "AWS::ApiGateway::GatewayResponse").values():
        rendered = gateway["Properties"]["ResponseTemplates"]["application/json"]
        rendered = rendered.replace("$context.error.messageString", json.dumps("Invalid request body")).replace(
            "$context.error.responseType", "BAD_REQUEST_BODY"
        )
        jsonschema.validate(json.loads(rendered), error_schema)
        cors, headers, none = gateway["Properties"]["ResponseParameters"]["Fn::If"]
        assert cors == "HasCors" and none == {"Ref": "AWS::NoValue"}
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == {"Fn::Sub": "'${CorsAllowOrigin}'"}
    assert {
        g["Properties"]["ResponseType"] for g in resources_of(body, "AWS::ApiGateway::GatewayResponse").values()
    } == {"DEFAULT_4XX", "DEFAULT_5XX"}


@pytest.mark.parametrize("kind", KINDS)
def test_auth_keys_usage_plan_stage_and_logs_from_the_template(kind: str) -> None:
    """What moto does not create: asserted from the template itself."""
    body = template(kind)
    res = body["Resources"]
    method = res["ResolutionMethod"]["Properties"]
    assert method["AuthorizationType"] == {"Fn::If": ["UseIam", "AWS_IAM", "NONE"]}
    assert body["Conditions"]["UseIam"] == {"Fn::Equals": [{"Ref": "customAuthType"}, "AWS_IAM"]}
    assert method["ApiKeyRequired"] is True
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert res["Api"]["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    permission = res["ApiInvokePermission"]["Properties"]
    assert permission["SourceArn"]["Fn::Sub"].endswith(":${Api}/*/POST/resolution")
    stage = res["ApiStage"]["Properties"]
    assert stage["StageName"] == {"Ref": "customStageName"}
    assert stage["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    access_format = json.loads(stage["AccessLogSetting"]["Format"])
    assert access_format["requestId"] == "$context.requestId" and "apiKeyId" in access_format
    (settings,) = stage["MethodSettings"]
    assert settings["MetricsEnabled"] is True
    assert settings["ThrottlingRateLimit"] == {"Ref": "StageRateLimit"}
    plan = res["UsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "ApiStage"}}]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "UsagePlanRateLimit"},
        "BurstLimit": {"Ref": "UsagePlanBurstLimit"},
    }
    assert plan["Quota"] == {
        "Fn::If": ["HasQuota", {"Limit": {"Ref": "UsagePlanDailyQuota"}, "Period": "DAY"}, {"Ref": "AWS::NoValue"}]
    }
    assert res["ApiKey"]["Properties"]["Enabled"] is True
    assert res["UsagePlanKey"]["Properties"] == {
        "KeyId": {"Ref": "ApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "UsagePlan"},
    }
    for name, group in resources_of(body, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name, function in resources_of(body, "AWS::Lambda::Function").items():
        logging_config = function["Properties"]["LoggingConfig"]
        assert logging_config["LogFormat"] == "JSON", name  # one JSON object per line, with requestId
        assert res[logging_config["LogGroup"]["Ref"]]["Type"] == "AWS::Logs::LogGroup"
    alarms = {a["Properties"]["MetricName"] for a in resources_of(body, "AWS::CloudWatch::Alarm").values()}
    backend = "Invocation5XXErrors" if kind != "lambda" else "Errors"
    # (and on the SageMaker stacks, the alarm that wakes the asynchronous endpoint from zero)
    # and one on each dead-letter queue of the jobs.
    wake_up = {"HasBacklogWithoutCapacity"} if kind != "lambda" else set()
    assert alarms == {"5XXError", "Latency", "Throttles", backend, "ApproximateNumberOfMessagesVisible"} | wake_up
    for alarm in resources_of(body, "AWS::CloudWatch::Alarm").values():
        if alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible":
            queue = alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
            assert queue in ("JobDeadLetterQueue", "JobEventsDeadLetterQueue")
            assert alarm["Properties"]["AlarmActions"] == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }
    assert "Dashboard" in res


def test_lambda_variant_network_and_storage_from_the_template() -> None:
    body = template("lambda")
    res = body["Resources"]
    fs = res["FileSystem"]["Properties"]
    assert fs["Encrypted"] is True
    (deny,) = fs["FileSystemPolicy"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    function = res["Function"]
    props = function["Properties"]
    assert props["MemorySize"] == {"Ref": "LambdaMemorySize"}
    assert props["Environment"]["Variables"]["SUPERRES_MODEL_DIR"] == "/mnt/models"
    assert props["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/models"
    assert "ModelFiles" in function["DependsOn"]
    custom = res["ModelFiles"]["Properties"]
    assert 0 < custom["ServiceTimeout"] < 3600
    assert res["StagerFunction"]["Properties"]["Timeout"] < custom["ServiceTimeout"]
    # No security group allows all traffic.
    for name, group in resources_of(body, "AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupEgress", []) + group["Properties"].get(
            "SecurityGroupIngress", []
        ):
            assert rule["IpProtocol"] != "-1", name
    assert res["FunctionToFileSystemEgress"]["Properties"]["FromPort"] == 2049


@pytest.mark.parametrize("kind", KINDS)
def test_output_bucket_from_the_template(kind: str) -> None:
    body = template(kind)
    res = body["Resources"]
    bucket = res["OutputBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert (
        set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
        and len(bucket["PublicAccessBlockConfiguration"]) == 4
    )
    (expiry,) = bucket["LifecycleConfiguration"]["Rules"]
    assert (
        expiry["ExpirationInDays"] == {"Ref": "ResultExpiryDays"}
        and expiry["Status"] == "Enabled"
        and "Prefix" not in expiry
    )
    (deny,) = res["OutputBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    arn = {"Fn::GetAtt": ["OutputBucket", "Arn"]}
    assert deny["Resource"] == [arn, {"Fn::Join": ["", [arn, "/*"]]}]
    # Every action, not a list of some: no request to the bucket goes without TLS.
    assert deny["Action"] == "s3:*" and deny["Principal"] == {"AWS": "*"}
    env = res["Function"]["Properties"]["Environment"]["Variables"]
    assert env["SUPERRES_OUTPUT_BUCKET"] == {"Ref": "OutputBucket"}
    assert env["SUPERRES_OUTPUT_URL_SECONDS"] == {"Ref": "ResultUrlSeconds"}
    assert body["Outputs"]["OutputBucketName"]["Value"] == {"Ref": "OutputBucket"}
    # The function writes and reads results/ only.
    on_bucket = [
        (o, i)
        for o, i in policy_statements(body)
        if "OutputBucket.Arn" in json.dumps(i.get("Resource")) and i["Effect"] == "Allow"
    ]
    if kind != "lambda":
        assert [item for owner, item in on_bucket if owner == "FunctionRole"] == [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": {"Fn::Sub": "${OutputBucket.Arn}/results/*"},
            }
        ]


def test_job_resources_and_their_iam_from_the_template() -> None:
    """Every grant on the job resources, exactly: who may do what to which."""
    body = template("lambda")
    res = body["Resources"]
    table = res["JobTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True} and table["BillingMode"] == "PAY_PER_REQUEST"
    queue = res["JobQueue"]["Properties"]
    worker = res["Worker"]["Properties"]
    assert queue["VisibilityTimeout"] > worker["Timeout"] == 900
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]}
    assert (
        queue["SqsManagedSseEnabled"] is True
        and res["JobDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    )
    assert res["JobTopic"]["Properties"]["KmsMasterKeyId"]["Fn::Sub"].endswith(":alias/aws/sns")
    assert body["Outputs"]["JobTopicArn"]["Value"] == {"Ref": "JobTopic"}
    mapping = res["WorkerEventSource"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobQueue", "Arn"]} and mapping["FunctionName"] == {
        "Ref": "Worker"
    }
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # One image, one environment, two entry points.
    function = res["Function"]["Properties"]
    assert worker["Code"] == function["Code"] and worker["Environment"] == function["Environment"]
    assert (worker["Handler"], function["Handler"]) == ("lambda_sr.worker.handler", "lambda_sr.handler.handler")
    env = function["Environment"]["Variables"]
    assert (env["SUPERRES_JOB_TABLE"], env["SUPERRES_JOB_QUEUE_URL"], env["SUPERRES_JOB_TOPIC_ARN"]) == (
        {"Ref": "JobTable"},
        {"Ref": "JobQueue"},
        {"Ref": "JobTopic"},
    )
    grants: dict[tuple[str, str], set[str]] = {}
    for owner, item in policy_statements(body):
        text = json.dumps(item.get("Resource"))
        for target in ("OutputBucket.Arn}/results", "OutputBucket.Arn}/jobs", "JobTable", "JobQueue", "JobTopic"):
            if target in text and item["Effect"] == "Allow":
                grants.setdefault((owner, target), set()).update(as_list(item["Action"]))
    assert grants == {
        ("FunctionRole", "OutputBucket.Arn}/results"): {"s3:PutObject", "s3:GetObject"},
        ("FunctionRole", "OutputBucket.Arn}/jobs"): {"s3:PutObject"},
        ("FunctionRole", "JobTable"): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"},
        ("FunctionRole", "JobQueue"): {"sqs:SendMessage"},
        ("WorkerRole", "OutputBucket.Arn}/results"): {"s3:PutObject", "s3:GetObject"},
        ("WorkerRole", "OutputBucket.Arn}/jobs"): {"s3:GetObject"},
        ("WorkerRole", "JobTable"): {"dynamodb:GetItem", "dynamodb:PutItem"},
        ("WorkerRole", "JobQueue"): {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ChangeMessageVisibility",
        },
        ("WorkerRole", "JobTopic"): {"sns:Publish"},
    }
    # The prefixes granted above are the ones the service writes.
    from superres.service.jobs import INPUT_PREFIX
    from superres.service.settings import ServiceSettings

    assert (ServiceSettings.model_fields["output_prefix"].default, INPUT_PREFIX) == ("results/", "jobs/")


@pytest.mark.parametrize("kind", ["gpu", "inferentia"])
def test_async_jobs_from_the_template(kind: str) -> None:
    """SageMaker Asynchronous Inference behind AsyncJobs: off by default, and then nothing of it
    exists (cost at rest unchanged); on, an endpoint that scales to zero and wakes on backlog."""
    body = template(kind)
    res = body["Resources"]
    assert body["Parameters"]["AsyncJobs"]["Default"] == "false"
    assert body["Conditions"]["UseAsyncJobs"] == {"Fn::Equals": [{"Ref": "AsyncJobs"}, "true"]}
    conditional = {name for name, resource in res.items() if resource.get("Condition") == "UseAsyncJobs"}
    assert conditional == {
        "JobTable",
        "JobTopic",
        "InferenceEventsTopic",
        "AsyncModel",
        "AsyncEndpointConfig",
        "AsyncEndpoint",
        "AsyncEndpointPolicy",
        "AsyncScalableTarget",
        "AsyncBacklogScalingPolicy",
        "AsyncWakeUpPolicy",
        "AsyncWakeUpAlarm",
        "JobEventsLogGroup",
        "JobEventsDeadLetterQueue",
        "JobEventsDeadLetterQueuePolicy",
        "JobEventsDeadLetterAlarm",
        "JobEventsRole",
        "JobEvents",
        "JobEventsSubscription",
        "JobEventsPermission",
        "AsyncJobsPolicy",
    }

    # Nothing else refers to them but inside an Fn::If on the same condition.
    def unconditional(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("Fn::If", [None])[0] == "UseAsyncJobs":
                return None
            return {key: unconditional(value) for key, value in node.items()}
        if isinstance(node, list):
            return [unconditional(value) for value in node]
        return node

    for name, resource in res.items():
        if name not in conditional:
            text = json.dumps(unconditional(resource))
            for other in conditional:
                assert f'{{"Ref": "{other}"}}' not in text and f'"Fn::GetAtt": ["{other}"' not in text, (name, other)
    config = res["AsyncEndpointConfig"]["Properties"]
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"] == {"Fn::Sub": "s3://${OutputBucket}/async-out/"}
    assert output["S3FailurePath"] == {"Fn::Sub": "s3://${OutputBucket}/async-failed/"}
    assert output["NotificationConfig"] == {
        "SuccessTopic": {"Ref": "InferenceEventsTopic"},
        "ErrorTopic": {"Ref": "InferenceEventsTopic"},
    }
    assert config["ProductionVariants"][0]["ModelName"] == {"Fn::GetAtt": ["AsyncModel", "ModelName"]}
    environment = res["AsyncModel"]["Properties"]["PrimaryContainer"]["Environment"]
    assert environment["SUPERRES_TIME_BUDGET_SECONDS"] == "0"
    for topic in ("JobTopic", "InferenceEventsTopic"):
        assert res[topic]["Properties"]["KmsMasterKeyId"]["Fn::Sub"].endswith(":alias/aws/sns")
    target = res["AsyncScalableTarget"]["Properties"]
    assert target["MinCapacity"] == 0 and target["ResourceId"] == {
        "Fn::Sub": "endpoint/${AsyncEndpoint.EndpointName}/variant/AllTraffic"
    }
    tracking = res["AsyncBacklogScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    alarm = res["AsyncWakeUpAlarm"]["Properties"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["AlarmActions"] == [
        {"Ref": "AsyncWakeUpPolicy"}
    ]
    events = res["JobEvents"]["Properties"]
    assert (
        events["Handler"] == "lambda_sr.job_events.handler" and events["Code"] == res["Function"]["Properties"]["Code"]
    )
    assert events["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "Arn"]}}
    assert res["JobEventsSubscription"]["Properties"] == {
        "TopicArn": {"Ref": "InferenceEventsTopic"},
        "Protocol": "lambda",
        "Endpoint": {"Fn::GetAtt": ["JobEvents", "Arn"]},
        "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "Arn"]}},
    }
    assert res["JobEventsPermission"]["Properties"]["SourceArn"] == {"Ref": "InferenceEventsTopic"}
    env = res["Function"]["Properties"]["Environment"]["Variables"]
    assert env["SUPERRES_ASYNC_ENDPOINT_NAME"] == {
        "Fn::If": ["UseAsyncJobs", {"Fn::GetAtt": ["AsyncEndpoint", "EndpointName"]}, {"Ref": "AWS::NoValue"}]
    }
    grants: dict[tuple[str, str], set[str]] = {}
    for owner, item in policy_statements(body):
        for resource in as_list(item.get("Resource")):
            text = json.dumps(resource)
            for target in (
                "async-in",
                "async-out",
                "async-failed",
                "/results",
                "JobTable",
                "JobTopic",
                "InferenceEventsTopic",
                "AsyncEndpoint",
                "JobEventsDeadLetterQueue",
            ):
                if target in text and item["Effect"] == "Allow":
                    grants.setdefault((owner, target), set()).update(as_list(item["Action"]))
    assert grants == {
        ("FunctionRole", "/results"): {"s3:PutObject", "s3:GetObject"},
        ("AsyncJobsPolicy", "AsyncEndpoint"): {"sagemaker:InvokeEndpointAsync"},
        ("AsyncJobsPolicy", "async-in"): {"s3:PutObject"},
        ("AsyncJobsPolicy", "JobTable"): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"},
        ("AsyncEndpointPolicy", "async-in"): {"s3:GetObject"},
        ("AsyncEndpointPolicy", "async-out"): {"s3:PutObject"},
        ("AsyncEndpointPolicy", "async-failed"): {"s3:PutObject"},
        ("AsyncEndpointPolicy", "InferenceEventsTopic"): {"sns:Publish"},
        ("JobEventsRole", "/results"): {"s3:PutObject", "s3:GetObject"},
        ("JobEventsRole", "async-out"): {"s3:GetObject"},
        ("JobEventsRole", "async-failed"): {"s3:GetObject"},
        ("JobEventsRole", "JobTable"): {"dynamodb:GetItem", "dynamodb:PutItem"},
        ("JobEventsRole", "JobTopic"): {"sns:Publish"},
        ("JobEventsRole", "JobEventsDeadLetterQueue"): {"sqs:SendMessage"},
    }
    # The prefixes granted and configured above are the ones the service reads and writes.
    from superres.service import jobs

    assert (jobs.ASYNC_INPUT_PREFIX, jobs.ASYNC_OUTPUT_PREFIX, jobs.ASYNC_FAILURE_PREFIX) == (
        "async-in/",
        "async-out/",
        "async-failed/",
    )


# ---------------------------------------------------------------- moto server: stacks


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def aws(moto_url: str):
    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # The code assets the templates point at (moto's Lambda reads zips from its S3).
    s3 = client("s3")
    bucket = f"{build.EXAMPLE_ASSETS['%%BUCKET_NAME%%']}-{REGION}"
    s3.create_bucket(Bucket=bucket)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("placeholder.py", "")
    prefix = f"{build.EXAMPLE_ASSETS['%%SOLUTION_NAME%%']}/{build.EXAMPLE_ASSETS['%%VERSION%%']}"
    for name in ("efs-model-stager.zip", "invoke-endpoint.zip"):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=archive.getvalue())
    return client


def create_stack(aws, kind: str, name: str, **parameters: str) -> dict[str, Any]:
    cfn = aws("cloudformation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfn.create_stack(
            StackName=name,
            TemplateBody=filled(kind),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        if "LogicalResourceId" in r and "PhysicalResourceId" in r
    }
    return {
        "stack": stack,
        "resources": resources,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
    }


def role_policy(aws, role: str, name: str) -> dict[str, Any]:
    document = aws("iam").get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, dict):
        return document
    # moto keeps inline policies made by CloudFormation as Python reprs, not JSON.
    text = urllib.parse.unquote(document)
    return json.loads(text) if text.lstrip().startswith('{"') else ast.literal_eval(text)


def assert_method_wiring(aws, created: dict[str, Any], auth: str) -> dict[str, Any]:
    apigw = aws("apigateway")
    api_id = created["resources"]["Api"]
    (resource,) = [r for r in apigw.get_resources(restApiId=api_id)["items"] if r.get("pathPart") == "resolution"]
    method = apigw.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod="POST")
    assert method["authorizationType"] == auth
    assert method["apiKeyRequired"] is True
    integration = method["methodIntegration"]
    assert integration["type"] == "AWS_PROXY" and integration["httpMethod"] == "POST"
    function = aws("lambda").get_function_configuration(FunctionName=created["resources"]["Function"])
    assert integration["uri"] == (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function['FunctionArn']}/invocations"
    )
    assert created["outputs"]["aikitsInvokeURLresolution"].startswith(
        f"https://{api_id}.execute-api.{REGION}.amazonaws.com/"
    )
    return function


def test_lambda_stack_in_moto(aws, moto_url: str) -> None:
    created = create_stack(aws, "lambda", "superres-lambda")
    res = created["resources"]
    # Everything but the custom resource exists; the stack waits for the model staging answer.
    assert created["stack"]["StackStatus"] == "CREATE_IN_PROGRESS"
    function = assert_method_wiring(aws, created, "AWS_IAM")
    # Lambda in the new VPC's private subnets, EFS access point mounted at /mnt/models.
    ec2 = aws("ec2")
    private = {res["Private0Subnet"], res["Private1Subnet"]}
    assert set(function["VpcConfig"]["SubnetIds"]) == private
    assert function["VpcConfig"]["SecurityGroupIds"] == [res["FunctionSecurityGroup"]]
    assert {s["VpcId"] for s in ec2.describe_subnets(SubnetIds=sorted(private))["Subnets"]} == {res["Vpc"]}
    # New accounts may give a function 3008 MB at most: the default fits, the first deploy succeeds.
    assert function["MemorySize"] == 3008 and function["Timeout"] == 60
    env = function["Environment"]["Variables"]
    assert env["SUPERRES_VARIANT"] == "lambda" and env["SUPERRES_MODEL_DIR"] == "/mnt/models"
    assert env["SUPERRES_MODEL_X4"] == "realesr-general-x4v3" and env["SUPERRES_ALLOWED_S3_BUCKETS"] == "[]"
    # moto's Lambda has no FileSystemConfigs: the mount is asserted from the template, the
    # file system, mount targets and access point it names through moto's EFS API.
    body = template("lambda")["Resources"]
    for name in ("Function", "StagerFunction"):
        (mount,) = body[name]["Properties"]["FileSystemConfigs"]
        assert mount["LocalMountPath"] == "/mnt/models"
        assert mount["Arn"]["Fn::Sub"].endswith(":access-point/${ModelsAccessPoint}")
    efs = aws("efs")
    fs_id = res["FileSystem"]
    assert efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"][0]["Encrypted"] is True
    targets = efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]
    assert {t["SubnetId"] for t in targets} == private
    (point,) = efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]
    # (moto reports no physical id for the access point: it is the file system's only one.)
    assert point["PosixUser"]["Uid"] == 1000 and point["RootDirectory"]["Path"] == "/superres-models"
    mount_groups = {
        group
        for target in targets
        for group in efs.describe_mount_target_security_groups(MountTargetId=target["MountTargetId"])["SecurityGroups"]
    }
    assert mount_groups == {res["FileSystemSecurityGroup"]}
    (nfs,) = ec2.describe_security_groups(GroupIds=[res["FileSystemSecurityGroup"]])["SecurityGroups"][0][
        "IpPermissions"
    ]
    assert nfs["FromPort"] == 2049 and nfs["UserIdGroupPairs"][0]["GroupId"] == res["FunctionSecurityGroup"]
    stager = aws("lambda").get_function_configuration(FunctionName=res["StagerFunction"])
    assert stager["Timeout"] == 900 and set(stager["VpcConfig"]["SubnetIds"]) == private
    assert_job_resources(aws, created, function)
    # The stager answers (what efs_model_stager sends, see test_custom_resource_stager):
    # then, and only then, the stack completes.
    answer = {
        "Status": "SUCCESS",
        "StackId": created["stack"]["StackId"],
        "RequestId": "r",
        "LogicalResourceId": "ModelFiles",
        "PhysicalResourceId": "efs-models-1",
        "Data": {"Files": "realesr-general-x4v3.pth"},
    }
    response = httpx.put(
        f"{moto_url}/cloudformation_{REGION}/cfnresponse",
        params={"stack": created["stack"]["StackId"]},
        content=json.dumps(answer),
        headers={"Host": f"cloudformation.{REGION}.amazonaws.com"},
    )
    assert response.status_code == 200
    stack = aws("cloudformation").describe_stacks(StackName="superres-lambda")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def assert_job_resources(aws, created: dict[str, Any], function: dict[str, Any]) -> None:
    """The output bucket, the job table, queues, topic and worker as moto created them."""
    res, outputs = created["resources"], created["outputs"]
    s3 = aws("s3")
    bucket = outputs["OutputBucketName"]
    assert bucket == res["OutputBucket"]
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # (moto's CloudFormation drops PublicAccessBlockConfiguration and LifecycleConfiguration:
    # asserted from the template, test_output_bucket_from_the_template.)
    env = function["Environment"]["Variables"]
    # (moto keeps a Number parameter as a number here; Lambda makes every value a string.)
    assert env["SUPERRES_OUTPUT_BUCKET"] == bucket and str(env["SUPERRES_OUTPUT_URL_SECONDS"]) == "3600"
    if "JobQueue" not in res:
        return
    table = env["SUPERRES_JOB_TABLE"]
    assert table == res["JobTable"] == outputs["JobTableName"]
    described = aws("dynamodb").describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    # (moto's CloudFormation drops TimeToLiveSpecification: asserted from the template.)
    sqs = aws("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=env["SUPERRES_JOB_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    dead = sqs.get_queue_attributes(QueueUrl=res["JobDeadLetterQueue"], AttributeNames=["QueueArn"])["Attributes"]
    # AWS's guidance for a Lambda event source: maxReceiveCount 5, visibility 6x the timeout.
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead["QueueArn"], "maxReceiveCount": 5}
    assert int(queue["VisibilityTimeout"]) == 6 * 900
    topic = env["SUPERRES_JOB_TOPIC_ARN"]
    assert topic == outputs["JobTopicArn"]
    assert aws("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"].endswith(":alias/aws/sns")
    lam = aws("lambda")
    worker = lam.get_function_configuration(FunctionName=outputs["WorkerName"])
    assert worker["Timeout"] == 900 and worker["Environment"] == function["Environment"]
    (mapping,) = lam.list_event_source_mappings(FunctionName=outputs["WorkerName"])["EventSourceMappings"]
    assert mapping["EventSourceArn"] == queue["QueueArn"] and mapping["BatchSize"] == 1
    # The cost cap: at most WorkerMaxConcurrency (2 by default) jobs compute at once.
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}
    run_jobs = role_policy(aws, res["WorkerRole"], "run-jobs")["Statement"]
    granted = {action: statement["Resource"] for statement in run_jobs for action in statement["Action"]}
    assert granted["sns:Publish"] == topic and granted["sqs:ReceiveMessage"] == queue["QueueArn"]
    assert (
        granted["dynamodb:PutItem"].endswith(f":table/{table}")
        and granted["s3:GetObject"] == f"arn:aws:s3:::{bucket}/jobs/*"
    )


def test_lambda_stack_without_iam_auth_in_moto(aws) -> None:
    created = create_stack(aws, "lambda", "superres-lambda-open", customAuthType="NONE", AllowedS3Buckets="in-a,in-b")
    function = assert_method_wiring(aws, created, "NONE")
    assert json.loads(function["Environment"]["Variables"]["SUPERRES_ALLOWED_S3_BUCKETS"]) == ["in-a", "in-b"]
    statement, decrypt = role_policy(aws, created["resources"]["FunctionRole"], "read-allow-listed-buckets")[
        "Statement"
    ]
    assert statement["Action"] == ["s3:GetObject"]
    # SSE-KMS objects of these buckets decrypt through S3 only, for these buckets only.
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Resource"] == "arn:aws:kms:*:*:key/*"
    context = decrypt["Condition"]["StringLike"]
    assert context["kms:ViaService"] == "s3.*.amazonaws.com"
    assert sorted(r for r in context["kms:EncryptionContext:aws:s3:arn"] if r) == [
        "arn:aws:s3:::in-a",
        "arn:aws:s3:::in-a/*",
        "arn:aws:s3:::in-b",
        "arn:aws:s3:::in-b/*",
    ]
    # CloudFormation drops the AWS::NoValue items of unused bucket slots; moto leaves nulls.
    assert sorted(r for r in statement["Resource"] if r) == ["arn:aws:s3:::in-a/*", "arn:aws:s3:::in-b/*"]


#: (stack, instance type, AWS's image it runs, model artifact): us-east-1's registry account of
#: the generated mappings, each Inferentia family on its own Neuron image, one artifact for both.
MOTO_ENDPOINTS = [
    (
        "gpu",
        "ml.g4dn.2xlarge",
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.6.0-gpu-py312",
        "sagemaker-gpu-model.tar.gz",
    ),
    (
        "inferentia",
        "ml.inf2.8xlarge",
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference-neuronx:2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04",
        "sagemaker-neuron-model.tar.gz",
    ),
    (
        "inferentia",
        "ml.inf1.2xlarge",
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference-neuron:1.13.1-neuron-py310-sdk2.20.2-ubuntu20.04",
        "sagemaker-neuron-model.tar.gz",
    ),
]


@pytest.fixture
def moto_hosts_inf2(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's endpoint-config check predates Inf2: its list has ml.inf1.* and no ml.inf2.*, which
    SageMaker hosts (cfn-lint's per-Region hosting instance types, from the AWS Price List)."""
    from moto.sagemaker.models import FakeEndpointConfig

    moto_check = FakeEndpointConfig.validate_instance_type

    def check(config: Any, instance_type: str) -> None:
        if instance_type not in ("ml.inf2.xlarge", "ml.inf2.8xlarge"):
            moto_check(config, instance_type)

    monkeypatch.setattr(FakeEndpointConfig, "validate_instance_type", check)


@pytest.mark.usefixtures("moto_hosts_inf2")
@pytest.mark.parametrize(("kind", "instance", "image", "artifact"), MOTO_ENDPOINTS)
def test_sagemaker_stack_in_moto(aws, kind: str, instance: str, image: str, artifact: str) -> None:
    created = create_stack(
        aws,
        kind,
        f"superres-{instance.replace('.', '-')}",
        deployInstanceType=instance,
        MinInstances="2",
        MaxInstances="4",
    )
    assert created["stack"]["StackStatus"] == "CREATE_COMPLETE"
    function = assert_method_wiring(aws, created, "AWS_IAM")
    sagemaker = aws("sagemaker")
    # (moto's CloudFormation names endpoints itself: the name that carries the instance type
    # is asserted from the template, test_instance_type_updates_replace_the_endpoint_and_keep_capacity.)
    endpoint_name = created["outputs"]["EndpointName"]
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == instance and variant["InitialInstanceCount"] == 2
    assert variant["VariantName"] == "AllTraffic"
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == image
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://superres-assets-{REGION}/superres-kit/v1.0.0/{artifact}"
    # The endpoint role pulls from that image's repository, and from no other.
    repository = image.split("/", 1)[1].split(":")[0]
    (pull,) = [
        statement
        for statement in role_policy(aws, created["resources"]["EndpointRole"], "model-image-logs")["Statement"]
        if "ecr:BatchGetImage" in statement["Action"]
    ]
    assert pull["Resource"] == f"arn:aws:ecr:{REGION}:763104351884:repository/{repository}"
    model_env = model["PrimaryContainer"]["Environment"]
    assert model_env["SUPERRES_MODEL_X4"] == "RealESRGAN_x4plus"
    assert model_env["SAGEMAKER_PROGRAM"] == "inference.py"
    if kind == "inferentia":
        # The Neuron runtime, serving the one network the stack compiles.
        assert model_env["SUPERRES_RUNTIME"] == "neuron"
        assert json.loads(model_env["SUPERRES_MODELS"]) == ["RealESRGAN_x4plus"]
    else:
        assert "SUPERRES_RUNTIME" not in model_env and "SUPERRES_MODELS" not in model_env
    # Real-time requests to an instance still compiling get the 503 at once; an asynchronous job
    # waits for the compile, within its invocation's hour and the serving stack's timeout.
    assert "SUPERRES_NEURON_WARMUP_WAIT_SECONDS" not in model_env
    async_env = template(kind)["Resources"]["AsyncModel"]["Properties"]["PrimaryContainer"]["Environment"]
    if kind == "inferentia":
        wait = int(async_env["SUPERRES_NEURON_WARMUP_WAIT_SECONDS"])
        assert 0 < wait < min(int(async_env["TS_DEFAULT_RESPONSE_TIMEOUT"]), 3600)
    else:
        assert "SUPERRES_NEURON_WARMUP_WAIT_SECONDS" not in async_env
    # moto drops EnableNetworkIsolation when it creates the model from CloudFormation.
    assert template(kind)["Resources"]["Model"]["Properties"]["EnableNetworkIsolation"] is True
    env = function["Environment"]["Variables"]
    assert env["SUPERRES_ENDPOINT_NAME"] == endpoint_name
    assert env["SUPERRES_FACE_ENABLED"] == ("true" if kind == "gpu" else "false")
    (statement,) = role_policy(aws, created["resources"]["FunctionRole"], "invoke-endpoint")["Statement"]
    assert statement["Resource"] == endpoint["EndpointArn"]
    assert_job_resources(aws, created, function)
    # AsyncJobs is off by default: no job resources, and POST /jobs answers 501.
    assert "JobTable" not in created["resources"] and "SUPERRES_JOB_TABLE" not in env

    # moto skips Application Auto Scaling in CloudFormation: from the template.
    body = template(kind)["Resources"]
    target = body["ScalableTarget"]["Properties"]
    assert target["MinCapacity"] == {"Ref": "MinInstances"} and target["MaxCapacity"] == {"Ref": "MaxInstances"}
    assert target["ResourceId"] == {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/AllTraffic"}
    tracking = body["ScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_sagemaker_async_jobs_stack_in_moto(aws) -> None:
    created = create_stack(aws, "gpu", "superres-gpu-async", AsyncJobs="true")
    assert created["stack"]["StackStatus"] == "CREATE_COMPLETE"
    res, outputs = created["resources"], created["outputs"]
    function = assert_method_wiring(aws, created, "AWS_IAM")
    env = function["Environment"]["Variables"]
    assert env["SUPERRES_ASYNC_ENDPOINT_NAME"] == outputs["AsyncEndpointName"]
    assert (
        env["SUPERRES_JOB_TABLE"] == outputs["JobTableName"] and env["SUPERRES_JOB_TOPIC_ARN"] == outputs["JobTopicArn"]
    )
    sagemaker = aws("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=outputs["AsyncEndpointName"])
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    bucket = outputs["OutputBucketName"]
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert (output["S3OutputPath"], output["S3FailurePath"]) == (
        f"s3://{bucket}/async-out/",
        f"s3://{bucket}/async-failed/",
    )
    events_topic = res["InferenceEventsTopic"]
    assert output["NotificationConfig"] == {"SuccessTopic": events_topic, "ErrorTopic": events_topic}
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Environment"]["SUPERRES_TIME_BUDGET_SECONDS"] == "0"
    events = aws("lambda").get_function_configuration(FunctionName=res["JobEvents"])
    assert events["Handler"] == "lambda_sr.job_events.handler"
    assert events["Environment"]["Variables"]["SUPERRES_JOB_TABLE"] == outputs["JobTableName"]
    (start,) = [
        s
        for s in role_policy(aws, res["FunctionRole"], "start-async-jobs")["Statement"]
        if "sagemaker:InvokeEndpointAsync" in s["Action"]
    ]
    assert start["Resource"] == endpoint["EndpointArn"]
    for topic in (events_topic, outputs["JobTopicArn"]):
        assert (
            aws("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"].endswith(":alias/aws/sns")
        )
    # (moto's CloudFormation skips AWS::SNS::Subscription: the function's subscription to
    # SageMaker's topic is asserted from the template, test_async_jobs_from_the_template.)


# ---------------------------------------------------------------- first deploy, and what callers cannot do


@pytest.mark.parametrize("kind", KINDS)
def test_api_gateway_logging_role_from_the_template(kind: str) -> None:
    """A stage with access logging fails where the account has no API Gateway CloudWatch role."""
    body = template(kind)
    res = body["Resources"]
    assert body["Parameters"]["SetApiGatewayLoggingRole"]["Default"] == "true"
    account = res["ApiGatewayAccount"]
    assert account["Condition"] == "SetApiGatewayAccount"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}
    logs_role = res["ApiGatewayLoggingRole"]
    assert logs_role["Condition"] == "SetApiGatewayAccount"
    # The account setting outlives the stack: so must the role it names.
    assert logs_role["DeletionPolicy"] == account["DeletionPolicy"] == "Retain"
    assert logs_role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    # The stage waits for the account setting, through a handle that exists either way.
    stage = res["ApiStage"]
    assert "ApiGatewayLoggingReady" in stage["DependsOn"]
    ready = res["ApiGatewayLoggingReady"]
    assert ready["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    assert ready["Metadata"]["After"] == {"Fn::If": ["SetApiGatewayAccount", [{"Ref": "ApiGatewayAccount"}], []]}
    # Execution logging (errors only) into a log group of the stack, with its retention.
    (settings,) = stage["Properties"]["MethodSettings"]
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert "ExecutionLogGroup" in stage["DependsOn"]
    assert res["ExecutionLogGroup"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "API-Gateway-Execution-Logs_${Api}/${customStageName}"
    }


def test_api_gateway_logging_role_in_moto(aws) -> None:
    created = create_stack(aws, "gpu", "superres-gpu-logging")
    iam = aws("iam")
    name = created["resources"]["ApiGatewayLoggingRole"]
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "apigateway.amazonaws.com"}
    # (moto's CloudFormation attaches no ManagedPolicyArns and skips AWS::ApiGateway::Account:
    # both asserted from the template, test_api_gateway_logging_role_from_the_template.)
    # An account that has its role already: the stack leaves the setting alone.
    kept = create_stack(aws, "gpu", "superres-gpu-has-logging", SetApiGatewayLoggingRole="false")
    assert kept["stack"]["StackStatus"] == "CREATE_COMPLETE"
    assert "ApiGatewayLoggingRole" not in kept["resources"]


def test_lambda_memory_and_worker_cap_from_the_template() -> None:
    body = template("lambda")
    memory = body["Parameters"]["LambdaMemorySize"]
    assert memory["Default"] == 3008 and memory["MaxValue"] == 10240
    assert "1769 MB" in memory["Description"] and "Service Quotas" in memory["Description"]
    for name in ("Function", "Worker"):
        assert body["Resources"][name]["Properties"]["MemorySize"] == {"Ref": "LambdaMemorySize"}
    cap = body["Parameters"]["WorkerMaxConcurrency"]
    assert cap["Default"] == 2 and cap["MinValue"] == 2
    scaling = body["Resources"]["WorkerEventSource"]["Properties"]["ScalingConfig"]
    assert scaling == {"MaximumConcurrency": {"Ref": "WorkerMaxConcurrency"}}


def test_memory_reserved_concurrency_and_worker_cap_in_moto(aws) -> None:
    created = create_stack(
        aws,
        "lambda",
        "superres-lambda-sized",
        LambdaMemorySize="10240",
        FunctionReservedConcurrency="20",
        WorkerMaxConcurrency="5",
    )
    lam = aws("lambda")
    function = created["resources"]["Function"]
    assert lam.get_function_configuration(FunctionName=function)["MemorySize"] == 10240
    assert lam.get_function_concurrency(FunctionName=function)["ReservedConcurrentExecutions"] == 20
    (mapping,) = lam.list_event_source_mappings(FunctionName=created["outputs"]["WorkerName"])["EventSourceMappings"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}
    # By default nothing is reserved (an account whose quota is 10 can reserve none).
    default = create_stack(aws, "gpu", "superres-gpu-unreserved")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName=default["resources"]["Function"]
    )


@pytest.mark.parametrize("kind", KINDS)
def test_reserved_concurrency_is_a_parameter(kind: str) -> None:
    body = template(kind)
    assert body["Parameters"]["FunctionReservedConcurrency"]["Default"] == 0
    assert body["Resources"]["Function"]["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "FunctionReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }


@pytest.mark.parametrize("kind", ["gpu", "inferentia"])
def test_instance_type_updates_replace_the_endpoint_and_keep_capacity(kind: str) -> None:
    """SageMaker refuses to change the instance type of a variant registered with autoscaling:
    the endpoint's name carries the instance type, so a new type is a new endpoint (replacement),
    and its scalable target follows. Other updates keep the capacity autoscaling reached."""
    res = template(kind)["Resources"]
    for name, target in (("Endpoint", "ScalableTarget"), ("AsyncEndpoint", "AsyncScalableTarget")):
        props = res[name]["Properties"]
        assert props["RetainAllVariantProperties"] is True
        text, variables = props["EndpointName"]["Fn::Sub"]
        assert text.endswith("-${StackId}-${Instance}")
        assert variables["Instance"] == {"Fn::Join": ["-", {"Fn::Split": [".", {"Ref": "deployInstanceType"}]}]}
        assert f"${{{name}.EndpointName}}" in res[target]["Properties"]["ResourceId"]["Fn::Sub"]
        longest = text.replace("${StackId}", "0" * 8).replace("${Instance}", "ml-g4dn-8xlarge")
        assert len(longest) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", longest)


def test_sqs_settings_follow_aws_guidance() -> None:
    res = template("lambda")["Resources"]
    queue = res["JobQueue"]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * res["Worker"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5


@pytest.mark.parametrize("kind", KINDS)
def test_tls_and_source_ip_allow_list_from_the_template(kind: str) -> None:
    body = template(kind)
    api = body["Resources"]["Api"]["Properties"]
    assert api["SecurityPolicy"] == "TLS_1_2"
    condition, policy, none = api["Policy"]["Fn::If"]
    assert condition == "HasSourceIps" and none == {"Ref": "AWS::NoValue"}
    allow, deny = policy["Statement"]
    # Without IAM auth API Gateway needs an Allow beside the Deny; with it, no Allow for everyone.
    assert allow["Fn::If"][0] == "UseIam" and allow["Fn::If"][1] == {"Ref": "AWS::NoValue"}
    assert allow["Fn::If"][2]["Effect"] == "Allow"
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "NotIpAddress": {"aws:SourceIp": {"Ref": "AllowedSourceIps"}}
    }
    assert body["Conditions"]["HasSourceIps"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "AllowedSourceIps"}]}, ""]}]
    }


@pytest.mark.parametrize("kind", KINDS)
def test_cors_from_the_template(kind: str) -> None:
    body = template(kind)
    res = body["Resources"]
    preflights = {
        name: r["Properties"]
        for name, r in resources_of(body, "AWS::ApiGateway::Method").items()
        if r["Properties"]["HttpMethod"] == "OPTIONS"
    }
    paths = {props["ResourceId"]["Ref"] for props in preflights.values()}
    assert paths == {"ResolutionResource", "ModelsResource", "JobsResource", "JobsIdResource"}
    for name, props in preflights.items():
        assert res[name]["Condition"] == "HasCors"
        # Browsers send no key and no signature on a preflight.
        assert props["AuthorizationType"] == "NONE" and props["ApiKeyRequired"] is False
        assert props["Integration"]["Type"] == "MOCK"
        (answer,) = props["Integration"]["IntegrationResponses"]
        origin = answer["ResponseParameters"]["method.response.header.Access-Control-Allow-Origin"]
        assert origin == {"Fn::Sub": "'${CorsAllowOrigin}'"}
    # The deployment waits for them when they exist.
    (deployment,) = resources_of(body, "AWS::ApiGateway::Deployment")
    assert "PreflightsReady" in res[deployment]["DependsOn"]
    # The functions add the header to their answers.
    env = res["Function"]["Properties"]["Environment"]["Variables"]
    assert env["SUPERRES_CORS_ORIGIN"] == {"Ref": "CorsAllowOrigin"}


def test_api_deployment_is_new_whenever_the_api_changes() -> None:
    """A Deployment resource never redeploys on update: its logical id digests the API's definition."""
    from templates.generator import api as api_module

    (name,) = resources_of(template("gpu"), "AWS::ApiGateway::Deployment")
    assert re.fullmatch(r"ApiDeployment[0-9a-f]{10}", name)
    before = build.render_all()
    original = api_module.CORS_ALLOW_METHODS
    api_module.CORS_ALLOW_METHODS = "'GET,POST,PUT,OPTIONS'"
    try:
        after = build.render_all()
    finally:
        api_module.CORS_ALLOW_METHODS = original
    for path in before:
        old = resources_of(json.loads(before[path]), "AWS::ApiGateway::Deployment")
        new = resources_of(json.loads(after[path]), "AWS::ApiGateway::Deployment")
        assert old.keys() != new.keys(), path.name


def test_ordering_of_the_stager_and_the_model_files() -> None:
    res = template("lambda")["Resources"]
    assert {"FunctionToFileSystemEgress", "MountTarget0", "MountTarget1"} <= set(res["StagerFunction"]["DependsOn"])
    ready = res["ModelFiles"]["Properties"]["NetworkReady"]["Fn::If"]
    assert ready[0] == "CreateVpc"
    assert ready[1] == [
        {"Ref": "PrivateDefaultRoute"},
        {"Ref": "Private0RouteAssociation"},
        {"Ref": "Private1RouteAssociation"},
    ]


@pytest.mark.parametrize("kind", ["gpu", "inferentia"])
def test_sns_subscription_redrives_to_the_dead_letter_queue(kind: str) -> None:
    res = template(kind)["Resources"]
    subscription = res["JobEventsSubscription"]["Properties"]
    assert subscription["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["JobEventsDeadLetterQueue", "Arn"]}}
    (statement,) = res["JobEventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "InferenceEventsTopic"}}}


@pytest.mark.parametrize("kind", KINDS)
def test_allow_listed_sse_kms_buckets_can_be_decrypted(kind: str) -> None:
    statements = template(kind)["Resources"]["AllowedBucketsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (decrypt,) = [s for s in statements if s["Action"] == ["kms:Decrypt"]]
    context = decrypt["Condition"]["StringLike"]
    assert context["kms:ViaService"] == {"Fn::Sub": "s3.*.${AWS::URLSuffix}"}
    assert len(context["kms:EncryptionContext:aws:s3:arn"]) == 2 * PROMISED_ALLOWED_BUCKETS


def test_the_invoke_function_knows_the_models_its_endpoint_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """It has no model store to look in: GPU offers what the release's artifact carries,
    Inferentia the one network compiled for its NeuronCores; the settings read the list as the stack sets it."""
    from superres.service.settings import ServiceSettings

    package = load_script("deployment_package", "deployment/package.py")
    gpu = template("gpu")["Resources"]["Function"]["Properties"]["Environment"]["Variables"]["SUPERRES_MODELS"]
    carried = [name for name in package.DEFAULT_ARTIFACT_MODELS if get_spec(name).scale == 4]
    assert json.loads(gpu) == carried
    monkeypatch.setenv("SUPERRES_MODELS", gpu)
    assert ServiceSettings.for_variant("gpu").models == frozenset(carried)
    inferentia = template("inferentia")["Resources"]
    served = inferentia["Function"]["Properties"]["Environment"]["Variables"]["SUPERRES_MODELS"]
    assert served == {"Fn::Sub": '["${ModelName}"]'}
    # The endpoint is told the same list: it compiles only that network.
    assert inferentia["Model"]["Properties"]["PrimaryContainer"]["Environment"]["SUPERRES_MODELS"] == served
