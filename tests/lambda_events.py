"""Lambda invocation inputs as AWS sends them."""

from __future__ import annotations

import base64


def api_gateway_event(body: str, *, base64_body: bool = False) -> dict:
    """A REST API (v1) proxy event as API Gateway sends it to Lambda."""
    return {
        "resource": "/resolution",
        "path": "/resolution",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/resolution",
            "httpMethod": "POST",
            "path": "/prod/resolution",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest"},
            "accountId": "123456789012",
            "apiId": "abc123",
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body else body,
        "isBase64Encoded": base64_body,
    }


class LambdaContext:
    """The attributes of Lambda's context object that the hosts read."""

    function_name = "superres"
    aws_request_id = "lambda-request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
