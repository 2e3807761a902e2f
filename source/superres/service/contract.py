"""The written contract (openapi.yaml) and request validation against it.

The request schema in the contract is the only definition of a valid request:
the hosts validate with it here, API Gateway validates with it in the
templates, and the tests check answers against the same document.
"""

from __future__ import annotations

import json
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
def _request_validator() -> jsonschema.Draft4Validator:
    request_schema = schema("ResolutionRequest")
    jsonschema.Draft4Validator.check_schema(request_schema)
    return jsonschema.Draft4Validator(request_schema)


def parse_json_request(body: bytes) -> dict[str, Any]:
    """The request object, valid against the contract, or a 400 saying what is wrong."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise BadRequestError("the body is not valid JSON: nested too deeply") from None
    except ValueError as error:  # also bad UTF-8, and integers of more than 4300 digits
        raise BadRequestError(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequestError("the body must be a JSON object")
    try:
        invalid = jsonschema.exceptions.best_match(_request_validator().iter_errors(payload))
    except RecursionError:  # parsed, but too deep to describe what is wrong with it
        raise BadRequestError("the body is nested too deeply") from None
    if invalid is not None:
        raise BadRequestError(_describe(invalid))
    return payload


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "anyOf" and not error.path:
        return "give the image as url or img"
    where = ".".join(str(part) for part in error.path)
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where}: {message}" if where else message
