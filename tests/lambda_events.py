"""Lambda invocation inputs as AWS sends them."""

from __future__ import annotations

import base64


def api_gateway_event(
    body: str | bytes | None,
    *,
    base64_body: bool = False,
    method: str = "POST",
    path: str = "/resolution",
    resource: str | None = None,
    headers: dict[str, str] | None = None,
    api_key_id: str | None = None,
    query: dict[str, str] | None = None,
) -> dict:
    """A REST API (v1) proxy event as API Gateway sends it to Lambda. A bytes body is a binary
    media type's: API Gateway sends it base64-encoded."""
    sent = {"Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    if isinstance(body, bytes):
        body, base64_body = base64.b64encode(body).decode(), False
        encoded = True
    else:
        encoded = base64_body
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {name: [value] for name, value in sent.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": "/prod" + path,
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest", "apiKeyId": api_key_id},
            "accountId": "123456789012",
            "apiId": "abc123",
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body and body is not None else body,
        "isBase64Encoded": encoded,
    }


def sqs_event(messages: list[dict]) -> dict:
    """An SQS event source mapping's batch, from messages as sqs.receive_message returns them."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:superres-jobs",
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
    }


class LambdaContext:
    """The attributes of Lambda's context object that the hosts read."""

    function_name = "superres"
    aws_request_id = "lambda-request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
