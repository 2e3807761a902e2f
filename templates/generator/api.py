"""The REST API: the contract's operations, validation, auth, usage plan, key, stage and access log."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from superres.service.contract import contract, schema

from .core import NO_VALUE, Resource, Template, alnum, if_, skip, sub
from .iam import role
from .observability import API_NAME, log_group
from .parameters import Common


def binary_media_types() -> list[str]:
    """The contract's request bodies other than JSON (a raw image, a multipart form), which API
    Gateway must pass as binary (base64 in the proxy event, decoded by Mangum); ``image/*``
    also makes it decode a raw image answer for a caller whose Accept names an image type."""
    content = contract()["paths"]["/resolution"]["post"]["requestBody"]["content"]
    return [kind for kind in content if kind != "application/json"]


def method_parameter(parameter: dict[str, Any]) -> str:
    """An OpenAPI parameter as API Gateway names it (its query string is ``querystring``)."""
    where = {"query": "querystring"}.get(parameter["in"], parameter["in"])
    return f"method.request.{where}.{parameter['name']}"


def request_model_schema() -> dict[str, Any]:
    """The contract's request schema as an API Gateway (JSON Schema draft 4) model."""
    body = schema("ResolutionRequest")
    return {"$schema": "http://json-schema.org/draft-04/schema#", "title": "ResolutionRequest", **body}


ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "apiKeyId": "$context.identity.apiKeyId",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "integrationStatus": "$context.integrationStatus",
        "errorMessage": "$context.error.message",
        "errorType": "$context.error.responseType",
    },
    separators=(",", ":"),
)

#: What a browser may send (the SigV4 headers, the API key, an idempotency key for jobs).
CORS_ALLOW_HEADERS = "'Content-Type,X-Amz-Date,Authorization,X-Api-Key,X-Amz-Security-Token,Idempotency-Key'"
CORS_ALLOW_METHODS = "'GET,POST,OPTIONS'"
#: API Gateway's own errors in the contract's Error shape ({"message", "code"}).
GATEWAY_ERROR_TEMPLATE = '{"message":$context.error.messageString,"code":"$context.error.responseType"}'

PERMISSION_SOURCE_SKIP = (
    "lambda_function_public_access_prohibited_check",
    (
        "SourceArn names this API's methods (an Fn::Sub of the account, Region and API id), which "
        "the rule only reads as a string or a plain Ref/GetAtt."
    ),
)

#: The contract's operations as API Gateway methods: logical-name prefix of each.
METHOD_NAMES = {"resolution": "Resolution", "listModels": "ListModels", "createJob": "CreateJob", "getJob": "GetJob"}


def path_resources(t: Template, api: Resource, paths: list[str]) -> dict[str, Resource]:
    """One AWS::ApiGateway::Resource per path segment of the contract's paths: {path: resource}."""
    made: dict[str, Resource] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in made:
                continue
            parent = made.get("/".join(parts[: depth - 1]))
            made[prefix] = t.add(
                alnum(prefix.replace("{", "").replace("}", "").replace("/", " ")) + "Resource",
                "AWS::ApiGateway::Resource",
                {
                    "RestApiId": api.ref,
                    "ParentId": parent.ref if parent else api.att("RootResourceId"),
                    "PathPart": parts[depth - 1],
                },
            )
    return {path: made[path.strip("/")] for path in paths}


def cors_headers(common: Common, prefix: str) -> dict[str, Any]:
    """The CORS headers of an answer API Gateway makes (a gateway error, a preflight), as
    ``prefix``.<header>: ``gatewayresponse.header`` or ``method.response.header``."""
    values = {
        "Access-Control-Allow-Origin": sub("'${CorsAllowOrigin}'", common.cors_origin),
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Vary": "'Origin'",
    }
    return {f"{prefix}.{name}": value for name, value in values.items()}


def preflight(t: Template, common: Common, rest_api: Resource, resource: Resource, name: str) -> Resource:
    """OPTIONS on a path: API Gateway answers the browser's preflight itself (no key, no auth,
    as browsers send neither on a preflight), only with CorsAllowOrigin."""
    answered = cors_headers(common, "method.response.header")
    return t.add(
        name + "PreflightMethod",
        "AWS::ApiGateway::Method",
        {
            "RestApiId": rest_api.ref,
            "ResourceId": resource.ref,
            "HttpMethod": "OPTIONS",
            "AuthorizationType": "NONE",
            "ApiKeyRequired": False,
            "Integration": {
                "Type": "MOCK",
                "RequestTemplates": {"application/json": '{"statusCode": 204}'},
                "IntegrationResponses": [{"StatusCode": "204", "ResponseParameters": answered}],
            },
            "MethodResponses": [{"StatusCode": "204", "ResponseParameters": dict.fromkeys(answered, False)}],
        },
        condition=common.has_cors,
    )


def resource_policy(common: Common) -> dict[str, Any]:
    """With AllowedSourceIps: calls from other sources are refused (403) before auth or the key.
    Without IAM auth, API Gateway needs an explicit Allow beside the Deny; with IAM auth an
    Allow for everyone would let signed callers of other accounts in, so there is none."""
    everything = "execute-api:/*"
    allow = {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke", "Resource": everything}
    deny = {
        "Sid": "OnlyAllowedSourceIps",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": everything,
        "Condition": {"NotIpAddress": {"aws:SourceIp": common.source_ips.ref}},
    }
    return if_(
        common.has_source_ips,
        {"Version": "2012-10-17", "Statement": [if_(common.use_iam, NO_VALUE, allow), deny]},
        NO_VALUE,
    )


def logging_account(t: Template, common: Common) -> Resource:
    """The account's API Gateway CloudWatch role (SetApiGatewayLoggingRole), and what the stage
    waits on whether or not the stack sets it."""
    logs_role = role(
        t,
        "ApiGatewayLoggingRole",
        "apigateway.amazonaws.com",
        # The account setting outlives the stack and every API of the Region logs through it.
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
    )
    t.resources[logs_role.resource.name]["Properties"]["ManagedPolicyArns"] = [
        sub("arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")
    ]
    t.make_conditional(logs_role.resource, common.sets_logging_role)
    account = t.add(
        "ApiGatewayAccount",
        "AWS::ApiGateway::Account",
        {"CloudWatchRoleArn": logs_role.resource.arn},
        condition=common.sets_logging_role,
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
    )
    return t.after("ApiGatewayLoggingReady", common.sets_logging_role, [account])


def deployment_name(t: Template, names: list[str]) -> str:
    """``ApiDeployment`` + a digest of the API's definition: a changed method, model, gateway
    response or policy is a new logical id, so CloudFormation makes a new deployment (a
    Deployment resource never redeploys on update)."""
    definition = json.dumps([t.resources[name] for name in sorted(names)], sort_keys=True)
    return "ApiDeployment" + hashlib.sha256(definition.encode()).hexdigest()[:10]


def api(t: Template, common: Common, function: Resource) -> None:
    """REST API, the contract's operations validated by it, auth, usage plan, key, stage."""
    operations = [
        (path, method.upper(), spec)
        for path, methods in contract()["paths"].items()
        for method, spec in methods.items()
    ]
    rest_api = t.add(
        "Api",
        "AWS::ApiGateway::RestApi",
        {
            "Name": sub(API_NAME),
            "Description": "Image super-resolution: POST /resolution, GET /models, POST /jobs, GET /jobs/{id}",
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
            "BinaryMediaTypes": binary_media_types(),
            "ApiKeySourceType": "HEADER",
            # TLS 1.2 and newer only (the default, TLS_1_0, still accepts 1.0 and 1.1).
            "SecurityPolicy": "TLS_1_2",
            "Policy": resource_policy(common),
        },
    )
    resources = path_resources(t, rest_api, [path for path, _, _ in operations])
    request_model = t.add(
        "ResolutionRequestModel",
        "AWS::ApiGateway::Model",
        {
            "RestApiId": rest_api.ref,
            "Name": "ResolutionRequest",
            "ContentType": "application/json",
            "Description": "components/schemas/ResolutionRequest of openapi.yaml",
            "Schema": request_model_schema(),
        },
    )
    body_validator = t.add(
        "BodyValidator",
        "AWS::ApiGateway::RequestValidator",
        {"RestApiId": rest_api.ref, "Name": "body", "ValidateRequestBody": True, "ValidateRequestParameters": False},
    )
    uri = sub(
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Function.Arn}/invocations",
        variables={"Function.Arn": function.arn},
    )
    methods = []
    for path, method, spec in operations:
        name = METHOD_NAMES[spec["operationId"]]
        properties: dict[str, Any] = {
            "RestApiId": rest_api.ref,
            "ResourceId": resources[path].ref,
            "HttpMethod": method,
            "OperationName": spec["operationId"],
            "AuthorizationType": if_(common.use_iam, "AWS_IAM", "NONE"),
            "ApiKeyRequired": True,
            "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "TimeoutInMillis": 29000, "Uri": uri},
        }
        if "requestBody" in spec:
            model = spec["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert model == "ResolutionRequest", model
            properties["RequestValidatorId"] = body_validator.ref
            properties["RequestModels"] = {"application/json": request_model.ref}
        parameters = {method_parameter(p): bool(p.get("required")) for p in spec.get("parameters", [])}
        if parameters:
            properties["RequestParameters"] = parameters
        methods.append(t.add(name + "Method", "AWS::ApiGateway::Method", properties))
        # Each method may invoke the function, and nothing else of this API may.
        t.add(
            ("Api" if name == "Resolution" else name) + "InvokePermission",
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": function.arn,
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub(
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/"
                    + method
                    + path.replace("{id}", "*"),
                    rest_api,
                ),
            },
            Metadata=skip(PERMISSION_SOURCE_SKIP),
        )
    preflights = [
        preflight(t, common, rest_api, resources[path], alnum(path.replace("{id}", "item").replace("/", " ")))
        for path in dict.fromkeys(path for path, _, _ in operations)
    ]
    gateway_responses = [
        t.add(
            "GatewayResponse" + kind.replace("DEFAULT_", "Default"),
            "AWS::ApiGateway::GatewayResponse",
            {
                "RestApiId": rest_api.ref,
                "ResponseType": kind,
                # API Gateway's own errors carry the CORS headers only with CorsAllowOrigin.
                "ResponseParameters": if_(common.has_cors, cors_headers(common, "gatewayresponse.header"), NO_VALUE),
                "ResponseTemplates": {"application/json": GATEWAY_ERROR_TEMPLATE},
            },
        )
        for kind in ("DEFAULT_4XX", "DEFAULT_5XX")
    ]
    access_log = log_group(t, common, "AccessLogGroup")
    # API Gateway's execution log group, made here so that it has the retention and goes with the stack.
    execution_log = log_group(
        t,
        common,
        "ExecutionLogGroup",
        group_name=sub("API-Gateway-Execution-Logs_${Api}/${customStageName}", rest_api, common.stage_name),
    )
    definition = [rest_api, request_model, body_validator, *methods, *preflights, *gateway_responses]
    deployment = t.add(
        deployment_name(t, [each.name for each in definition]),
        "AWS::ApiGateway::Deployment",
        {"RestApiId": rest_api.ref, "Description": "POST /resolution, GET /models, POST /jobs, GET /jobs/{id}"},
        depends_on=[*methods, *gateway_responses, t.after("PreflightsReady", common.has_cors, preflights)],
    )
    logging_ready = logging_account(t, common)
    stage = t.add(
        "ApiStage",
        "AWS::ApiGateway::Stage",
        {
            "RestApiId": rest_api.ref,
            "DeploymentId": deployment.ref,
            "StageName": common.stage_name.ref,
            "TracingEnabled": True,
            "AccessLogSetting": {"DestinationArn": access_log.arn, "Format": ACCESS_LOG_FORMAT},
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "MetricsEnabled": True,
                    "ThrottlingRateLimit": common.stage_rate.ref,
                    "ThrottlingBurstLimit": common.stage_burst.ref,
                    "CachingEnabled": False,
                    # Errors only: INFO would log request bodies, which hold customers' images.
                    "LoggingLevel": "ERROR",
                    "DataTraceEnabled": False,
                }
            ],
        },
        depends_on=[logging_ready, execution_log],
        Metadata=skip(
            (
                "CKV_AWS_120",
                "Every request carries its own image: a cache would never hit and would bill by the hour at rest.",
            ),
        ),
    )
    usage_plan = t.add(
        "UsagePlan",
        "AWS::ApiGateway::UsagePlan",
        {
            "UsagePlanName": sub("${AWS::StackName}-default"),
            "Description": "Default plan; add one per customer tier",
            "ApiStages": [{"ApiId": rest_api.ref, "Stage": stage.ref}],
            "Throttle": {"RateLimit": common.usage_rate.ref, "BurstLimit": common.usage_burst.ref},
            "Quota": if_(common.has_quota, {"Limit": common.daily_quota.ref, "Period": "DAY"}, NO_VALUE),
        },
    )
    api_key = t.add(
        "ApiKey",
        "AWS::ApiGateway::ApiKey",
        {"Name": sub("${AWS::StackName}-default"), "Enabled": True, "Description": "First key, in the default plan"},
    )
    t.add(
        "UsagePlanKey",
        "AWS::ApiGateway::UsagePlanKey",
        {"KeyId": api_key.ref, "KeyType": "API_KEY", "UsagePlanId": usage_plan.ref},
    )
    invoke_url = "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${ApiStage}/"
    t.output(
        "aikitsInvokeURLresolution",
        "POST here (header x-api-key; SigV4-signed when customAuthType is AWS_IAM)",
        sub(invoke_url + "resolution", rest_api, stage),
    )
    t.output(
        "ModelsURL",
        "GET here for the models a request may name, with their native scales",
        sub(invoke_url + "models", rest_api, stage),
    )
    t.output(
        "JobsURL",
        "POST here to start an asynchronous job; GET <this>/<id> for its state",
        sub(invoke_url + "jobs", rest_api, stage),
    )
    t.output("ApiKeyId", "Id of the first API key (in the default usage plan)", api_key.ref)
    t.output(
        "GetApiKeyCommand",
        "Prints the value of the first API key",
        sub(
            "aws apigateway get-api-key --api-key ${ApiKey} --include-value --query value "
            "--output text --region ${AWS::Region}",
            api_key,
        ),
    )
    t.output("UsagePlanId", "Usage plan the keys belong to", usage_plan.ref)
    t.output(
        "IssueApiKeyCommand",
        "Issues a key for a new customer and adds it to the usage plan (replace CUSTOMER)",
        sub(
            "aws apigateway create-usage-plan-key --region ${AWS::Region} --usage-plan-id ${UsagePlan} "
            "--key-type API_KEY --key-id $(aws apigateway create-api-key --region ${AWS::Region} "
            "--name CUSTOMER --enabled --query id --output text)",
            usage_plan,
        ),
    )
    t.output(
        "RevokeApiKeyCommand",
        "Disables a customer's key (replace KEY_ID); list keys with: aws apigateway get-api-keys",
        sub(
            "aws apigateway update-api-key --region ${AWS::Region} --api-key KEY_ID "
            "--patch-operations op=replace,path=/enabled,value=false"
        ),
    )
    t.output("AccessLogGroupName", "API access logs (JSON, one line per request)", access_log.ref)
