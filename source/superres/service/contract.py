"""The written contract (openapi.yaml) and request validation against it.

The request schema in the contract is the only definition of a valid request:
the hosts validate with it here, API Gateway validates with it in the
templates, and the tests check answers against the same document. Every form of
request (JSON, a raw image body with its query string, a multipart form) becomes
one dict of fields and is validated here: ResolutionRequest with url or img,
ResolutionOptions beside an image sent as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import yaml

from ..errors import BadRequestError

CONTRACT_FILE = "openapi.yaml"


@cache
def contract_text() -> str:
    return files(__package__).joinpath(CONTRACT_FILE).read_text()


@cache
def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(contract_text())
    return loaded


def schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = contract()["components"]["schemas"][name]
    return found


@cache
def _validator(name: str) -> jsonschema.Draft4Validator:
    found = schema(name)
    jsonschema.Draft4Validator.check_schema(found)
    return jsonschema.Draft4Validator(found)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (not yet validated), or a 400."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise BadRequestError("the body is not valid JSON: nested too deeply") from None
    except ValueError as error:  # also bad UTF-8, and integers of more than 4300 digits
        raise BadRequestError(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequestError("the body must be a JSON object")
    return payload


def validate_request(payload: dict[str, Any], *, image_sent: bool = False) -> dict[str, Any]:
    """``payload`` if valid: against ResolutionRequest, or with ``image_sent`` (the image came
    as the body or a file part) against ResolutionOptions, which has no url or img."""
    validator = _validator("ResolutionOptions" if image_sent else "ResolutionRequest")
    try:
        invalid = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    except RecursionError:  # parsed, but too deep to describe what is wrong with it
        raise BadRequestError("the body is nested too deeply") from None
    if invalid is not None:
        if image_sent and invalid.validator == "additionalProperties" and {"url", "img"} & set(payload):
            raise BadRequestError("the image is the body (or the image part): give no url or img beside it")
        raise BadRequestError(_describe(invalid))
    return payload


_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,20})?")


def text_fields(pairs: Iterable[tuple[str, str]], where: str) -> dict[str, Any]:
    """Fields given as text (a query string, a form's text parts) as the types the contract's
    ResolutionRequest gives them: ``face=true`` a boolean, ``quality=80`` an integer,
    ``scale=1.5`` a number, ``context`` JSON. Text that is none of its types stays text, for
    validation to refuse by name."""
    properties = schema("ResolutionRequest")["properties"]
    fields: dict[str, Any] = {}
    for name, text in pairs:
        if name in fields:
            raise BadRequestError(f"{name} is given more than once in the {where}")
        fields[name] = _typed(text, _types(properties.get(name, {})))
    return fields


def _types(property_schema: dict[str, Any]) -> set[str]:
    """The JSON types a property takes (its ``type``, or those of its ``anyOf`` branches)."""
    branches = property_schema.get("anyOf", [property_schema])
    return {branch["type"] for branch in branches if "type" in branch}


def _typed(text: str, kinds: set[str]) -> Any:
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in kinds and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in kinds and _DECIMAL.fullmatch(text):
        return float(text)
    if "object" in kinds:
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return text


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "anyOf" and not error.path:
        return "give the image as url or img"
    where = ".".join(str(part) for part in error.absolute_path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where}: {message}" if where else message
