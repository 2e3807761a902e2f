"""The output bucket, and the jobs' table, topic and queues."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from superres.service.jobs import INPUT_PREFIX
from superres.service.settings import ServiceSettings

from .core import Condition, Parameter, Resource, Template, skip, sub
from .observability import dead_letter_alarm
from .parameters import Common

#: The key prefixes the service writes (IAM grants exactly these).
RESULTS_PREFIX = ServiceSettings.model_fields["output_prefix"].default
JOB_INPUT_PREFIX = INPUT_PREFIX
#: The worker runs up to Lambda's limit; SQS hides a message longer than that.
WORKER_TIMEOUT = 900
#: AWS's guidance for a queue a Lambda function consumes: a visibility timeout of six times the
#: function's timeout (batching and retries of a throttled invoke fit in it), and a
#: maxReceiveCount of at least 5 (a throttled receive counts too). Lambda developer guide,
#: "Using Lambda with Amazon SQS", queue configuration.
QUEUE_VISIBILITY_TIMEOUT = 6 * WORKER_TIMEOUT
MAX_RECEIVE_COUNT = 5

AWS_SNS_KEY = sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns")
SQS_ENCRYPTION = skip(
    (
        "CKV_AWS_27",
        (
            "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled), which checkov does not "
            "recognise; a KMS key would bill every message for ids that are not secret."
        ),
    )
)


@dataclass(frozen=True)
class Output:
    """The bucket of "output": "s3" results, and how long their presigned URLs work."""

    bucket: Resource
    url_seconds: Parameter

    def env(self) -> dict[str, Any]:
        return {"SUPERRES_OUTPUT_BUCKET": self.bucket.ref, "SUPERRES_OUTPUT_URL_SECONDS": self.url_seconds.ref}


def output_bucket(t: Template) -> Output:
    """The bucket of "output": "s3" results and job results: encrypted, private, TLS only,
    every object expired after ResultExpiryDays."""
    group = "Results and jobs"
    expiry_days = t.number(
        group,
        "ResultExpiryDays",
        "Days results are kept",
        default=7,
        minimum=1,
        description="The output bucket deletes every result (and job input) this many days after it was written.",
        maximum=3650,
    )
    url_seconds = t.number(
        group,
        "ResultUrlSeconds",
        "Presigned URL lifetime (seconds)",
        default=3600,
        minimum=60,
        description=(
            "How long the presigned GET URL of a result works. It is signed with the function's "
            "temporary credentials, so it never outlives them (a few hours at most)."
        ),
        maximum=43200,
    )
    bucket = t.add(
        "OutputBucket",
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-results",
                        "Status": "Enabled",
                        "ExpirationInDays": expiry_days.ref,
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    }
                ]
            },
        },
        # Results are disposable and expire anyway; a stack deletion must not fail on them,
        # but CloudFormation cannot empty a bucket: Retain leaves it to expire and be deleted.
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        Metadata=skip(
            (
                "CKV_AWS_18",
                (
                    "Results are written by the stack's own functions and read through presigned URLs; "
                    "the API access log already records every request, and a second logging bucket "
                    "would cost at rest for no extra trace."
                ),
            ),
            (
                "CKV_AWS_21",
                (
                    "Every object is a disposable result that the lifecycle rule expires; versioning would "
                    "keep deleted results and bill for them."
                ),
            ),
            (
                "s3_bucket_versioning_enabled_check",
                "Disposable results that the lifecycle rule expires; versioning would keep and bill deleted ones.",
            ),
            (
                "s3_bucket_object_lock_enabled_check",
                "Results must expire after ResultExpiryDays; object lock exists to stop exactly that.",
            ),
            (
                "s3_bucket_logging_enabled_check",
                "The API access log records every request that writes or signs a result; server access logs would add a bucket billed at rest.",
            ),
            (
                "s3_event_notifications_enabled_check",
                "Nothing reacts to a result being written: the job's SNS topic already tells of every finished job.",
            ),
            (
                "s3_bucket_default_encryption_kms_check",
                "SSE-S3 (AES256) encrypts every result at rest; SSE-KMS would bill a KMS request per result and presigned GET for no added control.",
            ),
        ),
    )
    t.add(
        "OutputBucketPolicy",
        "AWS::S3::BucketPolicy",
        {
            "Bucket": bucket.ref,
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": {"AWS": "*"},
                        "Action": "s3:*",
                        # Fn::Join, not Fn::Sub: the shape the Control Tower rule (CT.S3.PR.8) reads.
                        "Resource": [bucket.arn, {"Fn::Join": ["", [bucket.arn, "/*"]]}],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    )
    t.output("OutputBucketName", "Bucket of results answered as presigned URLs", bucket.ref)
    return Output(bucket, url_seconds)


@dataclass(frozen=True)
class JobRecords:
    """The jobs' records and the topic told of every finished job (both job engines)."""

    table: Resource
    topic: Resource


def job_table_and_topic(t: Template, condition: Condition | None = None) -> JobRecords:
    table = t.add(
        "JobTable",
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
        },
        condition=condition,
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        Metadata=skip(
            (
                "CKV_AWS_28",
                (
                    "Job records are transient (a TTL deletes them after days) and hold no result, only "
                    "its URL; point-in-time recovery would bill for restoring what expires anyway."
                ),
            ),
            (
                "dynamodb_table_pitr_enabled_check",
                "Job records are transient (a TTL deletes them) and hold only a result's URL: nothing to recover.",
            ),
            (
                "CKV_AWS_119",
                (
                    "Encrypted with the AWS managed DynamoDB key; a customer managed key adds $1/month and "
                    "a key policy for records that hold no image data."
                ),
            ),
        ),
    )
    topic = encrypted_topic(t, "JobTopic", "superres jobs", condition)
    t.output(
        "JobTopicArn",
        "SNS topic told of every finished job (subscribe a queue, a function or an HTTPS endpoint)",
        topic.ref,
        condition,
    )
    t.output("JobTableName", "DynamoDB table of the jobs", table.ref, condition)
    return JobRecords(table, topic)


def encrypted_topic(t: Template, name: str, display_name: str, condition: Condition | None = None) -> Resource:
    return t.add(
        name,
        "AWS::SNS::Topic",
        {"DisplayName": display_name, "KmsMasterKeyId": AWS_SNS_KEY},
        condition=condition,
    )


def dead_letter_queue(t: Template, name: str, condition: Condition | None = None) -> Resource:
    """A queue that keeps what failed for 14 days, the longest SQS allows. The redrive-allow
    policy marks it as a dead-letter queue (allowAll is SQS's default: it changes no access)."""
    return t.add(
        name,
        "AWS::SQS::Queue",
        {
            "MessageRetentionPeriod": 1209600,
            "SqsManagedSseEnabled": True,
            "RedriveAllowPolicy": {"redrivePermission": "allowAll"},
        },
        condition=condition,
        Metadata=SQS_ENCRYPTION,
    )


def job_queue(t: Template, common: Common) -> Resource:
    """The Lambda stack's work queue, with a dead-letter queue and its alarm."""
    dead_letters = dead_letter_queue(t, "JobDeadLetterQueue")
    queue = t.add(
        "JobQueue",
        "AWS::SQS::Queue",
        {
            # Six times the worker's timeout (see QUEUE_VISIBILITY_TIMEOUT), so a job being
            # computed or retried after a throttle is never handed out twice.
            "VisibilityTimeout": QUEUE_VISIBILITY_TIMEOUT,
            "MessageRetentionPeriod": 345600,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": dead_letters.arn, "maxReceiveCount": MAX_RECEIVE_COUNT},
        },
        Metadata=SQS_ENCRYPTION,
    )
    failed = f"failed {MAX_RECEIVE_COUNT} times"
    dead_letter_alarm(t, common, "JobDeadLetterAlarm", dead_letters, f"Job messages the worker {failed}")
    t.output("JobDeadLetterQueueUrl", f"Jobs whose worker {failed}", dead_letters.ref)
    return queue
