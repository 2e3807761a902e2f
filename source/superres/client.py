"""A small client for ``POST /resolution``: a deployed API Gateway endpoint or the local server.

Authentication follows what the deployment's API Gateway asks for: an API key
(usage plans) in ``x-api-key``, and/or IAM authorization, for which every
request is signed with SigV4 by botocore, the same signer the AWS SDKs use.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

__all__ = ["MissingCredentialsError", "ResolutionAPIError", "ResolutionClient", "UpscaleResult"]


@dataclass(frozen=True)
class UpscaleResult:
    image: bytes
    format: str
    width: int
    height: int
    #: The rest of the answer (scale, model, faces, seconds, ...): what a host adds stays visible.
    metadata: dict[str, Any] = field(default_factory=dict)


class ResolutionAPIError(Exception):
    """A non-200 answer. ``code`` is None when the answer has none: API Gateway's own
    403/429/5xx bodies carry only a message."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"HTTP {status}{f' {code}' if code else ''}: {message}")
        self.status = status
        self.code = code
        self.message = message


class MissingCredentialsError(NoCredentialsError):  # type: ignore[misc]  # botocore ships no types: its base class is Any to mypy
    """SigV4 asked for, but botocore's credential chain found nothing to sign with."""

    fmt = (
        "SigV4 signing needs AWS credentials and none were found: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, a credentials file, an instance role), or pass credentials="
    )


class ResolutionClient:
    """``endpoint`` is the full invoke URL of the resource, stage included
    (``https://abc.execute-api.us-east-1.amazonaws.com/prod/resolution``)."""

    def __init__(
        self,
        endpoint: str,
        *,
        api_key: str | None = None,
        sigv4_region: str | None = None,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.api_key = api_key
        self.sigv4_region = sigv4_region
        if sigv4_region and credentials is None:
            # The SDKs' own chain: environment, profiles, SSO, container and instance roles.
            credentials = botocore.session.Session().get_credentials()
            if credentials is None:
                raise MissingCredentialsError()
        self.credentials = credentials
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> ResolutionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def upscale(
        self,
        image: bytes | None = None,
        *,
        url: str | None = None,
        scale: float = 2,
        face: bool = False,
        format: str | None = None,
        quality: int | None = None,
    ) -> UpscaleResult:
        """Upscale ``image`` bytes, or the image the service fetches from ``url`` (which wins if both)."""
        if image is None and url is None:
            raise ValueError("give the image as bytes or as url")
        payload: dict[str, Any] = {"scale": scale, "face": face}
        if url is not None:
            payload["url"] = url
        if image is not None:
            payload["img"] = base64.b64encode(image).decode("ascii")
        if format is not None:
            payload["format"] = format
        if quality is not None:
            payload["quality"] = quality
        answer = self._post(json.dumps(payload).encode())
        body = _json_object(answer)
        if answer.status_code != 200:
            message = body.get("message", body.get("Message")) if body is not None else None
            code = body.get("code") if body is not None else None
            raise ResolutionAPIError(
                answer.status_code,
                str(code) if code is not None else None,
                str(message) if message is not None else answer.text[:500] or answer.reason_phrase,
            )
        if body is None or "result" not in body:
            raise ResolutionAPIError(200, None, f"the answer is not a result: {answer.text[:200]!r}")
        rest = dict(body)
        return UpscaleResult(
            image=base64.b64decode(rest.pop("result")),
            format=rest.pop("format", None),
            width=rest.pop("width", None),
            height=rest.pop("height", None),
            metadata=rest,
        )

    def _post(self, body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self.sigv4_region:
            assert self.credentials is not None
            request = AWSRequest(method="POST", url=self.endpoint, data=body, headers=headers)
            # Frozen: a refreshing credential set must not change between its parts.
            SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.sigv4_region).add_auth(request)
            headers = dict(request.headers.items())
            body = request.body
        return self._http.post(self.endpoint, content=body, headers=headers)


def _json_object(answer: httpx.Response) -> dict[str, Any] | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
