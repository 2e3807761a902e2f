"""The SageMaker stacks' images: AWS's own, no other ECR repository anywhere.

- GPU: AWS's PyTorch inference image, its Region map generated from the pinned sagemaker-core's
  image_uri_config/pytorch.json;
- Inferentia: AWS's PyTorch Neuron inference images, pytorch-inference-neuronx on Inf2 and
  pytorch-inference-neuron on Inf1, each family's registry accounts from sagemaker-core's Hugging
  Face Neuron tables and its Regions cut to where cfn-lint's pinned data has the instance types
  and the Deep Learning Containers publish Neuron images; a rule per family refuses the others.

The maps are read from the installed packages here, independently of the generator's code
path (templates/generator/images.py, inferentia.py), and compared with the committed templates.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import distribution, version
from pathlib import Path
from typing import Any

import pytest

from repo_modules import load_script
from superres.operate.regions import REGIONS
from superres.operate.rules import refused

ROOT = Path(__file__).resolve().parents[1]
build = load_script("templates_build", "templates/build.py")

#: The stacks that run no container image at all (zip functions only).
IMAGELESS = {"lambda"}
#: Family -> (its instance types, AWS's image repository and tag, the sagemaker-core table of
#: the accounts that publish Neuron inference images for it). The tags are aws/deep-learning-
#: containers' available_images.md (commit bbf69f1f): the newest Python 3.10 one of each.
NEURON_IMAGES = {
    "Inf2": (
        ("ml.inf2.xlarge", "ml.inf2.8xlarge"),
        "pytorch-inference-neuronx",
        "2.7.0-neuronx-py310-sdk2.25.0-ubuntu22.04",
        "huggingface-neuronx.json",
    ),
    "Inf1": (
        ("ml.inf1.xlarge", "ml.inf1.2xlarge", "ml.inf1.6xlarge"),
        "pytorch-inference-neuron",
        "1.13.1-neuron-py310-sdk2.20.2-ubuntu20.04",
        "huggingface-neuron.json",
    ),
}


def template(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(build.OUTPUTS[kind].read_text())
    return loaded


def sdk_table(name: str = "pytorch.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{name}").read_text()
    )
    return loaded


def newest_gpu_py312() -> tuple[str, dict[str, Any]]:
    inference = sdk_table()["inference"]
    assert "gpu" in inference["processors"]
    versions = [v for v, entry in inference["versions"].items() if "py312" in entry["py_versions"]]
    newest = max(versions, key=lambda v: [int(part) for part in v.split(".")])
    return newest, inference["versions"][newest]


def test_sagemaker_core_is_installed_at_its_pin() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pinned = next(entry.split("==")[1] for entry in dev if entry.startswith("sagemaker-core=="))
    assert version("sagemaker-core") == pinned


def test_the_region_map_is_the_sdks() -> None:
    newest, entry = newest_gpu_py312()
    body = template("gpu")
    mapping = {region: value["Account"] for region, value in body["Mappings"]["PyTorchInferenceRegistry"].items()}
    assert mapping == entry["registries"]
    image = body["Resources"]["Model"]["Properties"]["PrimaryContainer"]["Image"]["Fn::Sub"][0]
    assert image.endswith(f"/{entry['repository']}:{newest}-gpu-py312")


def test_every_quick_create_region_has_the_image() -> None:
    mapping = template("gpu")["Mappings"]["PyTorchInferenceRegistry"]
    assert sorted(set(REGIONS) - set(mapping)) == []


def test_the_real_time_and_async_endpoints_share_image_artifact_and_driver() -> None:
    resources = template("gpu")["Resources"]
    realtime, jobs = (resources[name]["Properties"]["PrimaryContainer"] for name in ("Model", "AsyncModel"))
    assert (realtime["Image"], realtime["ModelDataUrl"]) == (jobs["Image"], jobs["ModelDataUrl"])
    for config in ("EndpointConfig", "AsyncEndpointConfig"):
        (variant,) = resources[config]["Properties"]["ProductionVariants"]
        # CUDA 12.4 needs driver 550; ml.g4dn's default is 470.
        assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"


def numbers(version: str) -> list[int]:
    return [int(part) for part in version.split(".")]


def neuron_registries(table: str) -> dict[str, str]:
    """Region -> account of the newest inference entry of a Hugging Face Neuron table."""
    versions = sdk_table(table)["inference"]["versions"]
    newest = versions[max(versions, key=numbers)]
    frameworks = [key for key in newest if key.startswith("pytorch")]
    entry = newest[max(frameworks, key=lambda key: numbers(key.removeprefix("pytorch")))]
    registries: dict[str, str] = entry["registries"]
    return registries


def hosting_instance_types() -> dict[str, set[str]]:
    """Region -> SageMaker hosting instance types, as the pinned cfn-lint knows them."""
    path = "cfnlint/data/schemas/extensions/aws_sagemaker_hosting/instancetype_enum.json"
    table = json.loads(distribution("cfn-lint").locate_file(path).read_text())
    return {region: set(entry["enum"]) for region, entry in table.items() if isinstance(entry, dict)}


def expected_neuron_regions() -> dict[str, dict[str, str]]:
    """Family -> {Region: account} where the family has an image registry, the instance types
    and (aws/deep-learning-containers' table) a published Neuron image."""
    from templates.generator.inferentia import NEURON_CONTAINER_REGIONS

    hosting = hosting_instance_types()
    return {
        family: {
            region: account
            for region, account in neuron_registries(table).items()
            if set(types) <= hosting.get(region, set()) and region in NEURON_CONTAINER_REGIONS
        }
        for family, (types, _, _, table) in NEURON_IMAGES.items()
    }


def test_cfn_lint_is_installed_at_its_pin() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pinned = next(entry.split("==")[1] for entry in dev if entry.startswith("cfn-lint=="))
    assert version("cfn-lint") == pinned


def test_the_neuron_region_map_and_rules_are_the_pinned_datas() -> None:
    """Stale if sagemaker-core or cfn-lint is bumped and the template is not regenerated."""
    expected = expected_neuron_regions()
    assert all(expected.values()), "each family is offered somewhere"
    body = template("inferentia")
    mapping = body["Mappings"]["NeuronInferenceRegistry"]
    assert {
        family: {region: accounts[family] for region, accounts in mapping.items() if family in accounts}
        for family in NEURON_IMAGES
    } == expected
    for family, (types, _, _, _) in NEURON_IMAGES.items():
        rule = body["Rules"][f"{family}Region"]
        assert rule["RuleCondition"] == {"Fn::Contains": [list(types), {"Ref": "deployInstanceType"}]}
        (assertion,) = rule["Assertions"]
        assert assertion["Assert"] == {"Fn::Contains": [sorted(expected[family]), {"Ref": "AWS::Region"}]}
    # The China regions have neither family (no Neuron image there): the guide offers no Inf1 there either.
    assert not any(region.startswith("cn-") for region in mapping)


def resolve(node: Any, body: dict[str, Any], values: dict[str, str]) -> Any:
    """The value CloudFormation gives ``node`` (the intrinsic functions the SageMaker stacks use
    for images) for these parameter and pseudo parameter values."""
    if isinstance(node, list):
        return [resolve(item, body, values) for item in node]
    if not isinstance(node, dict):
        return node
    ((function, arguments),) = node.items()
    if function == "Ref":
        return values[arguments]
    if function == "Fn::FindInMap":
        name, top, second = (resolve(argument, body, values) for argument in arguments)
        return body["Mappings"][name][top][second]
    if function == "Fn::Equals":
        left, right = (resolve(argument, body, values) for argument in arguments)
        return left == right
    if function == "Fn::Or":
        return any(resolve(argument, body, values) for argument in arguments)
    if function == "Fn::If":
        condition, then, otherwise = arguments
        chosen = then if resolve(body["Conditions"][condition], body, values) else otherwise
        return resolve(chosen, body, values)
    if function == "Fn::Sub":
        text, variables = (arguments, {}) if isinstance(arguments, str) else arguments
        named = {**values, **{key: resolve(value, body, values) for key, value in variables.items()}}
        return re.sub(r"\$\{([^}]+)\}", lambda found: named[found.group(1)], text)
    raise AssertionError(f"{function} is not resolved here")


def test_each_family_runs_its_image_in_every_region_it_is_allowed_in() -> None:
    body = template("inferentia")
    resources = body["Resources"]
    pulls = [
        statement
        for policy in resources["EndpointRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if "ecr:BatchGetImage" in statement["Action"]
    ]
    checked = 0
    for family, (types, repository, tag, _) in NEURON_IMAGES.items():
        for region, account in expected_neuron_regions()[family].items():
            suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
            partition = "aws-cn" if region.startswith("cn-") else "aws"
            for instance in types:
                assert refused(body, region, {"deployInstanceType": instance}) == []
                values = {"deployInstanceType": instance, "AWS::Region": region, "AWS::URLSuffix": suffix}
                values["AWS::Partition"] = partition
                for model in ("Model", "AsyncModel"):
                    image = resources[model]["Properties"]["PrimaryContainer"]["Image"]
                    assert resolve(image, body, values) == f"{account}.dkr.ecr.{region}.{suffix}/{repository}:{tag}"
                (pull,) = pulls
                assert resolve(pull["Resource"], body, values) == (
                    f"arn:{partition}:ecr:{region}:{account}:repository/{repository}"
                )
                checked += 1
    assert checked >= 2 * len(REGIONS)


def test_the_rules_refuse_a_family_outside_its_regions() -> None:
    """Every Region sagemaker-core or cfn-lint knows, every instance type: the stack's rules
    accept it exactly where the family is offered, and say where that is when they refuse."""
    body = template("inferentia")
    expected = expected_neuron_regions()
    known = set(hosting_instance_types()) | {r for _, _, _, t in NEURON_IMAGES.values() for r in neuron_registries(t)}
    refusals = 0
    for family, (types, repository, _, _) in NEURON_IMAGES.items():
        for region in sorted(known):
            for instance in types:
                failed = refused(body, region, {"deployInstanceType": instance})
                if region in expected[family]:
                    assert failed == [], (region, instance)
                    continue
                (message,) = failed
                assert message.startswith(f"{types[0].rsplit('.', 1)[0]}.* endpoints with AWS's {repository} image")
                assert ", ".join(sorted(expected[family])) in message
                refusals += 1
    # China, and Regions with the instances but no Neuron image (eu-north-1 has ml.inf2 and ml.inf1).
    assert refused(body, "cn-northwest-1", {"deployInstanceType": "ml.inf1.xlarge"})
    assert refused(body, "eu-north-1", {"deployInstanceType": "ml.inf2.xlarge"})
    assert refusals > 0


def test_the_neuron_images_run_the_artifacts_python() -> None:
    """One artifact, built for Python 3.10, serves both families; Inf1's is torch-neuron's 1.13.1."""
    for _, repository, tag, _ in NEURON_IMAGES.values():
        assert "-py310-" in tag, (repository, tag)
    assert re.fullmatch(r"1\.13\.1-neuron-py310-sdk2\.\d+\.\d+-ubuntu20\.04", NEURON_IMAGES["Inf1"][2])


def ecr_references(node: Any) -> list[tuple[str, str, Any]]:
    """(registry account expression, repository, the Fn::Sub's variables) of every image URI or
    repository ARN in ``node``."""
    found: list[tuple[str, str, Any]] = []
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            text, variables = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
            for account, repository in re.findall(r"([^/:\s]+)\.dkr\.ecr\.[^/]+/([^:\"]+)", text):
                found.append((account, repository, variables))
            for account, repository in re.findall(r"ecr:\$\{AWS::Region\}:([^:]+):repository/(\S+)", text):
                found.append((account, repository, variables))
        for value in node.values():
            found += ecr_references(value)
    elif isinstance(node, list):
        for value in node:
            found += ecr_references(value)
    return found


#: Each AWS image repository a template may name, and the mapping of its registry accounts.
AWS_REPOSITORIES = {
    "pytorch-inference": "PyTorchInferenceRegistry",
    "pytorch-inference-neuronx": "NeuronInferenceRegistry",
    "pytorch-inference-neuron": "NeuronInferenceRegistry",
}


@pytest.mark.parametrize("kind", list(build.OUTPUTS))
def test_no_template_names_an_ecr_repository_outside_awss_inference_registries(kind: str) -> None:
    body = template(kind)
    accounts = set(sdk_table()["inference"]["versions"][newest_gpu_py312()[0]]["registries"].values())
    accounts |= {account for _, _, _, table in NEURON_IMAGES.values() for account in neuron_registries(table).values()}
    references = ecr_references(body)
    if kind in IMAGELESS:
        assert references == [] and not set(AWS_REPOSITORIES.values()) & set(body.get("Mappings", {}))
        return
    assert references, "the stack runs an image, so it names one"
    for account, repository, variables in references:
        assert account == "${Account}" and repository in AWS_REPOSITORIES, (account, repository)
        mapping, region, _ = variables["Account"]["Fn::FindInMap"]
        assert (mapping, region) == (AWS_REPOSITORIES[repository], {"Ref": "AWS::Region"})
        assert {account for value in body["Mappings"][mapping].values() for account in value.values()} <= accounts
    # Nothing of the kit's own: no registry account of the publisher's, no repository named after it.
    text = json.dumps(body)
    assert "EcrAccount" not in text and "SolutionName" not in text and "%%ECR_ACCOUNT_ID%%" not in text


def test_a_family_no_region_offers_fails_the_build() -> None:
    """A data bump that leaves a family nowhere must stop the build, not offer a choice every
    Region's rule refuses."""
    from templates.generator.inferentia import INF1, availability

    hosting = {"eu-north-1": {"enum": list(INF1.instance_types)}}
    with pytest.raises(ValueError, match="no Region has Inf1 endpoints"):
        availability(INF1, {"eu-north-1": "123456789012"}, hosting)


def test_every_instance_type_offered_is_a_sagemaker_hosting_type() -> None:
    """The pinned SageMaker API model (botocore) accepts each choice for a production variant."""
    import botocore.session

    hosting = set(
        botocore.session.get_session().get_service_model("sagemaker").shape_for("ProductionVariantInstanceType").enum
    )
    for kind in ("gpu", "inferentia"):
        offered = template(kind)["Parameters"]["deployInstanceType"]["AllowedValues"]
        assert offered and set(offered) <= hosting, kind
    assert template("inferentia")["Parameters"]["deployInstanceType"]["AllowedValues"] == [
        instance for family in NEURON_IMAGES.values() for instance in family[0]
    ]
