"""S3 output with presigned URLs, and asynchronous jobs, against moto server on 127.0.0.1.

boto3 reaches moto through the standard AWS_ENDPOINT_URL variable (as the hosts build their
clients in production), the presigned URLs are fetched with a plain HTTP client, and SNS
notifications are read from an SQS queue subscribed to the topic. The local server runs
under uvicorn on 127.0.0.1; the Lambda variant runs through its Mangum handler and its
worker handler with the events API Gateway and SQS send.
"""

from __future__ import annotations

import datetime
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import jsonschema
import numpy as np
import pytest

from lambda_events import LambdaContext, api_gateway_event, sqs_event
from servers import create_job_resources, file_server, serving
from service_helpers import HeldBackend, assert_error, b64, load_lambda, post, settings
from superres import codec
from superres.service.app import create_app
from superres.service.contract import contract, schema
from superres.service.local import LocalBackend, local_app

REGION = "us-east-1"
BUCKET = "superres-outputs"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield url
        finally:
            server.stop()


@pytest.fixture
def topic(moto: str) -> Iterator[tuple[str, Callable[[], list[dict]]]]:
    """A fresh SNS topic with an SQS queue subscribed (raw delivery); yields the topic ARN and
    a function that drains the notifications delivered so far."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    name = f"t{uuid.uuid4().hex[:12]}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    def delivered() -> list[dict]:
        found: list[dict] = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                body = json.loads(message["Body"])
                check(body, "JobNotification")
                found.append(body)
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    yield arn, delivered


def check(instance: object, name: str) -> None:
    """Valid against the contract's schema ``name``, its references resolved in the contract."""
    jsonschema.validate(instance, {**schema(name), "components": contract()["components"]})


def png(astronaut, size: int) -> bytes:
    return codec.encode(np.ascontiguousarray(astronaut[:size, :size]), "png")


def fetch_image(url: str) -> tuple[np.ndarray, codec.ImageInfo, httpx.Response]:
    """What a client does with a result URL: a plain GET, no AWS credentials."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    pixels, info = codec.decode(response.content)
    return pixels, info, response


# ---------------------------------------------------------------- S3 output (synchronous)


def test_output_s3_answers_a_presigned_url_that_serves_the_image(moto: str, astronaut) -> None:
    with serving(local_app(settings(output_bucket=BUCKET, output_url_seconds=600))) as url:
        before = datetime.datetime.now(datetime.UTC)
        first = post(url, {"img": b64(png(astronaut, 64)), "scale": 4, "output": "s3", "context": {"order": 7}})
        second = post(url, {"img": b64(png(astronaut, 64)), "scale": 4, "output": "s3"})
    assert first.status_code == 200, first.text
    body = first.json()
    check(body, "ResolutionResult")
    assert "result" not in body and "location" not in body
    assert body["context"] == {"order": 7} and (body["width"], body["height"]) == (256, 256)
    expires = datetime.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert 590 <= (expires - before).total_seconds() <= 610
    assert "X-Amz-Signature=" in body["result_url"] and "X-Amz-Expires=600" in body["result_url"]
    pixels, info, response = fetch_image(body["result_url"])
    assert (info.format, info.width, info.height) == ("png", 256, 256) and pixels.shape == (256, 256, 3)
    assert response.headers["content-type"] == "image/png"
    # Every result has its own key under the prefix: the same request twice is two objects.
    assert second.json()["result_url"].split("?")[0] != body["result_url"].split("?")[0]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="results/")["Contents"]]
    assert {body["result_url"].split("?")[0].split(f"/{BUCKET}/")[1]} <= set(keys)


def test_output_s3_without_a_bucket_is_400() -> None:
    with serving(local_app(settings())) as url:
        assert_error(post(url, {"img": "aGVsbG8=", "output": "s3"}), 400, 'output "s3"', "no output bucket")
        assert_error(post(url, {"img": "aGVsbG8=", "output": "ftp"}), 400, "output")


def test_too_large_inline_result_says_to_ask_for_s3(moto: str, astronaut) -> None:
    with serving(local_app(settings(output_bucket=BUCKET, max_response_bytes=20_000))) as url:
        request = {"img": b64(png(astronaut, 64)), "scale": 4}
        assert_error(post(url, request), 413, 'ask for "output": "s3"', "the limit is 20,000 bytes")
        stored = post(url, {**request, "output": "s3"})
    assert stored.status_code == 200, stored.text
    _, info, _ = fetch_image(stored.json()["result_url"])
    assert (info.width, info.height) == (256, 256)


def test_an_unwritable_output_bucket_is_a_502_in_the_error_shape(moto: str, astronaut) -> None:
    with serving(local_app(settings(output_bucket="no-such-bucket"))) as url:
        assert_error(post(url, {"img": b64(png(astronaut, 32)), "output": "s3"}), 502, "output bucket")


def test_context_is_bounded() -> None:
    with serving(local_app(settings())) as url:
        assert_error(post(url, {"img": "aGVsbG8=", "context": {"x": "y" * 5000}}), 400, "context is over 4,096 bytes")
        assert_error(post(url, {"img": "aGVsbG8=", "context": "text"}), 400, "context")


# ---------------------------------------------------------------- local jobs


def submit(base: str, payload: dict, key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **({"Idempotency-Key": key} if key else {})}
    return httpx.post(base + "/jobs", content=json.dumps(payload), headers=headers, timeout=30)


def states_until_done(base: str, job_id: str, timeout: float = 120.0) -> tuple[list[str], dict]:
    """Polls the job; the distinct states in the order seen, and the last answer."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        job = response.json()
        check(job, "Job")
        if not seen or seen[-1] != job["state"]:
            seen.append(job["state"])
        if job["state"] in ("succeeded", "failed"):
            return seen, job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish: {seen}")


def test_local_jobs_go_queued_running_succeeded_and_notify(topic, astronaut) -> None:
    arn, delivered = topic
    chosen = settings(job_topic_arn=arn, job_workers=1)
    backend = HeldBackend(LocalBackend(chosen))
    with serving(create_app(chosen, backend)) as url:
        try:
            first = submit(url, {"img": b64(png(astronaut, 256)), "scale": 4})
            second = submit(
                url, {"img": b64(png(astronaut, 256)), "scale": 4, "format": "jpeg", "context": {"abc": 123}}
            )
            assert first.status_code == second.status_code == 202, second.text
            job = second.json()
            check(job, "Job")
            assert first.json()["state"] == job["state"] == "queued" and job["context"] == {"abc": 123}
            assert second.headers["location"] == f"/jobs/{job['id']}"
            # The one worker computes the first job while the second waits.
            backend.wait_entered()
            assert httpx.get(f"{url}/jobs/{first.json()['id']}").json()["state"] == "running"
            assert httpx.get(f"{url}/jobs/{job['id']}").json()["state"] == "queued"
        finally:
            backend.release.set()
        assert states_until_done(url, first.json()["id"])[1]["state"] == "succeeded"
        _, done = states_until_done(url, job["id"])
        result = done["result"]
        assert result["result_url"] == f"{url}/jobs/{job['id']}/result" and result["context"] == {"abc": 123}
        pixels, info, _ = fetch_image(result["result_url"])
        assert (info.format, info.width, info.height) == ("jpeg", 1024, 1024) and pixels.shape == (1024, 1024, 3)
    notes = {note["id"]: note for note in delivered()}
    assert set(notes) == {first.json()["id"], job["id"]}
    note = notes[job["id"]]
    assert note["result"] is True and note["state"] == "succeeded" and note["context"] == {"abc": 123}
    assert note["image_url"] == [f"/jobs/{job['id']}/result"] and note["output_url"] == note["image_url"][0]


def test_local_jobs_fail_cleanly_on_bad_input(topic) -> None:
    arn, delivered = topic
    with serving(local_app(settings(job_topic_arn=arn))) as url, file_server({}) as images:
        not_an_image = submit(url, {"img": b64(b"plain text, not an image"), "context": {"n": 1}})
        unfetchable = submit(url, {"url": images + "/gone.png"})
        assert not_an_image.status_code == unfetchable.status_code == 202
        _, failed = states_until_done(url, not_an_image.json()["id"])
        _, gone = states_until_done(url, unfetchable.json()["id"])
        # Refused at once, no job: what needs no image.
        assert_error(submit(url, {"img": "aGVsbG8=", "scale": 9}), 400, "scale")
        assert_error(submit(url, {"colour": "blue"}), 400)
        assert_error(submit(url, {"img": "aGVsbG8="}, key="spaces are not allowed"), 400, "Idempotency-Key")
        assert_error(httpx.get(f"{url}/jobs/{uuid.uuid4().hex}"), 404, "no job")
        assert_error(httpx.get(f"{url}/jobs/not-a-job-id"), 404, "no job")
        assert_error(httpx.get(f"{url}/jobs/{uuid.uuid4().hex}/result"), 404)
    assert failed["state"] == "failed" and failed["status"] == 415 and "result" not in failed
    check(failed["error"], "Error")
    assert set(failed["error"]) == {"message", "code"} and failed["error"]["code"] == "unsupported_image"
    assert gone["status"] == 502 and "404" in gone["error"]["message"]
    notes = {note["id"]: note for note in delivered()}
    note = notes[failed["id"]]
    assert note["result"] is False and note["state"] == "failed" and note["image_url"] == []
    assert note["error"] == failed["error"] and note["context"] == {"n": 1} and "output_url" not in note


def test_a_retried_idempotency_key_is_the_same_job(topic, astronaut) -> None:
    arn, delivered = topic
    request = {"img": b64(png(astronaut, 48)), "scale": 2}
    with serving(local_app(settings(job_topic_arn=arn))) as url:
        first = submit(url, request, key="order-42")
        again = submit(url, request, key="order-42")
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        states_until_done(url, first.json()["id"])
        after = submit(url, request, key="order-42")  # retried after it finished: still that job
        assert after.status_code == 202 and after.json()["state"] == "succeeded"
        assert after.json()["id"] == first.json()["id"]
        assert_error(submit(url, {**request, "scale": 4}, key="order-42"), 422, "another request")
        other = submit(url, request, key="order-43")
        assert other.json()["id"] != first.json()["id"]
        states_until_done(url, other.json()["id"])
    ids = [note["id"] for note in delivered()]
    assert sorted(ids) == sorted([first.json()["id"], other.json()["id"]]), "one job, one notification, per key"


def test_a_burst_of_50_jobs_loses_and_duplicates_none(topic, astronaut) -> None:
    arn, delivered = topic
    tiny = b64(png(astronaut, 24))
    with serving(local_app(settings(job_topic_arn=arn, job_workers=2, job_queue_size=64))) as url:

        def one(n: int) -> httpx.Response:
            # 40 jobs; 10 of them sent twice at once (a client retrying with the same key and body).
            return submit(url, {"img": tiny, "scale": 2, "context": {"n": n % 40}}, key=f"burst-{n % 40}")

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(one, range(50)))
        assert [a.status_code for a in answers] == [202] * 50
        by_key: dict[int, set[str]] = {}
        for n, answer in enumerate(answers):
            by_key.setdefault(n % 40, set()).add(answer.json()["id"])
        assert all(len(ids) == 1 for ids in by_key.values()), "a retried key made a second job"
        ids = {next(iter(ids)) for ids in by_key.values()}
        assert len(ids) == 40
        finished = [states_until_done(url, job_id)[1] for job_id in sorted(ids)]
    assert all(job["state"] == "succeeded" for job in finished)
    notes = delivered()
    assert sorted(note["id"] for note in notes) == sorted(ids), "each job notified exactly once"
    assert {note["id"]: note["context"]["n"] for note in notes} == {
        answer.json()["id"]: n % 40 for n, answer in enumerate(answers)
    }


def test_a_full_job_queue_answers_429_at_once(astronaut) -> None:
    request = {"img": b64(png(astronaut, 64)), "scale": 4}
    chosen = settings(job_workers=1, job_queue_size=1)
    backend = HeldBackend(LocalBackend(chosen))
    with serving(create_app(chosen, backend)) as url:
        try:
            running = submit(url, request)
            backend.wait_entered()  # the worker has taken it: the queue is empty again
            waiting = submit(url, request)
            started = time.monotonic()
            refused = submit(url, request, key="refused")
            assert time.monotonic() - started < 1.0
        finally:
            backend.release.set()
        assert_error(refused, 429, "job queue is full")
        assert refused.headers["retry-after"] == "1"
        assert running.status_code == waiting.status_code == 202
        assert states_until_done(url, waiting.json()["id"])[1]["state"] == "succeeded"
        # A refused key was not used up: the retry makes the job.
        retried = submit(url, request, key="refused")
        assert retried.status_code == 202
        assert states_until_done(url, retried.json()["id"])[1]["state"] == "succeeded"


def test_local_jobs_store_results_in_the_output_bucket_when_configured(moto: str, astronaut) -> None:
    with serving(local_app(settings(output_bucket=BUCKET))) as url:
        created = submit(url, {"img": b64(png(astronaut, 40)), "scale": 2})
        _, done = states_until_done(url, created.json()["id"])
    assert done["result"]["result_url"].startswith(f"{moto}/{BUCKET}/results/{done['id']}.png?")
    _, info, _ = fetch_image(done["result"]["result_url"])
    assert (info.width, info.height) == (80, 80)


# ---------------------------------------------------------------- the Lambda variant


@pytest.fixture(scope="module")
def lambda_jobs(moto: str):
    """The CPU stack's job resources in moto, and the API and worker handlers as Lambda's
    init phase builds them from the stack's environment variables."""
    work = create_job_resources(boto3.client("dynamodb"), boto3.client("sqs"), "superres-jobs", "superres-work")
    return {
        "work": work,
        "env": {
            "SUPERRES_OUTPUT_BUCKET": BUCKET,
            "SUPERRES_JOB_TABLE": "superres-jobs",
            "SUPERRES_JOB_QUEUE_URL": work,
        },
    }


def lambda_pair(env: dict[str, str]):
    """The API and worker functions of the CPU stack, built from the same environment."""
    return load_lambda("lambda_sr.handler", env), load_lambda("lambda_sr.worker", env)


def call(api, method: str, path: str, body: dict | None = None, **options) -> tuple[int, dict, dict]:
    event = api_gateway_event(
        json.dumps(body) if body is not None else None,
        method=method,
        path=path,
        resource="/jobs" if path == "/jobs" else "/jobs/{id}",
        **options,
    )
    answer = api(event, LambdaContext())
    return answer["statusCode"], json.loads(answer["body"]), answer.get("headers", {})


def work_messages(queue: str) -> list[dict]:
    sqs = boto3.client("sqs")
    found = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        found += batch
    return found


def test_lambda_variant_jobs_through_dynamodb_sqs_and_the_worker(lambda_jobs, topic, astronaut) -> None:
    arn, delivered = topic
    api, worker = lambda_pair({**lambda_jobs["env"], "SUPERRES_JOB_TOPIC_ARN": arn})
    # 480x480 is past the synchronous limit of the Lambda variant (400x400); a job takes it.
    big = {"img": b64(png(astronaut, 480)), "scale": 2, "context": {"abc": 123}}
    status, job, headers = call(api, "POST", "/jobs", big, headers={"Idempotency-Key": "k-1"}, api_key_id="key-a")
    assert status == 202 and job["state"] == "queued", job
    assert headers["location"] == f"/prod/jobs/{job['id']}"
    # The client retries (say its connection broke): the same job, no second message.
    status, again, _ = call(api, "POST", "/jobs", big, headers={"Idempotency-Key": "k-1"}, api_key_id="key-a")
    assert status == 202 and again["id"] == job["id"]
    # Another API key with the same token is another caller: its own job.
    status, theirs, _ = call(api, "POST", "/jobs", big, headers={"Idempotency-Key": "k-1"}, api_key_id="key-b")
    assert status == 202 and theirs["id"] != job["id"]
    bad = {"img": b64(b"GIF89a" + bytes(64))}
    status, failing, _ = call(api, "POST", "/jobs", bad)
    messages = work_messages(lambda_jobs["work"])
    assert sorted(json.loads(m["Body"])["id"] for m in messages) == sorted([job["id"], theirs["id"], failing["id"]])
    assert call(api, "GET", f"/jobs/{job['id']}")[1]["state"] == "queued"
    # The worker function gets the batch as the SQS event source mapping delivers it.
    assert worker(sqs_event(messages), LambdaContext()) == {"batchItemFailures": []}
    status, done, _ = call(api, "GET", f"/jobs/{job['id']}")
    assert status == 200 and done["state"] == "succeeded", done
    check(done, "Job")
    _, info, _ = fetch_image(done["result"]["result_url"])
    assert (info.width, info.height) == (960, 960)
    status, failed, _ = call(api, "GET", f"/jobs/{failing['id']}")
    assert failed["state"] == "failed" and failed["status"] == 415 and failed["error"]["code"] == "unsupported_image"
    notes = {note["id"]: note for note in delivered()}
    assert set(notes) == {job["id"], theirs["id"], failing["id"]}
    assert notes[job["id"]]["image_url"] == [f"s3://{BUCKET}/results/{job['id']}.png"]
    assert notes[job["id"]]["context"] == {"abc": 123} and notes[failing["id"]]["result"] is False
    # A message delivered twice (SQS is at-least-once) runs nothing twice.
    assert worker(sqs_event(messages[:1]), LambdaContext()) == {"batchItemFailures": []}
    assert delivered() == []
    # The worker reports what it could not handle, so SQS retries it and then dead-letters it.
    broken = {**messages[0], "Body": "{not json"}
    assert worker(sqs_event([broken]), LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": broken["MessageId"]}]
    }
    assert call(api, "GET", f"/jobs/{uuid.uuid4().hex}")[0] == 404


def test_lambda_variant_without_job_resources_answers_501() -> None:
    api = load_lambda("lambda_sr.handler")
    status, body, _ = call(api, "POST", "/jobs", {"img": "aGVsbG8="})
    assert status == 501 and body["code"] == "jobs_not_enabled"
    assert call(api, "GET", f"/jobs/{uuid.uuid4().hex}")[0] == 501


# ---------------------------------------------------------------- the GPU/Inf1 variants


def sagemaker_notification(job_id: str, status: str, **response: str) -> dict:
    """The message SageMaker Asynchronous Inference publishes to its success or error topic."""
    message = {
        "awsRegion": REGION,
        "eventTime": "2026-11-22T02:46:00.608Z",
        "receivedTime": "2026-11-22T02:45:58.455Z",
        "invocationStatus": status,
        "requestParameters": {
            "accept": "application/json",
            "contentType": "application/json",
            "endpointName": "superres-async",
            "inputLocation": f"s3://{BUCKET}/async-in/{job_id}.json",
        },
        "responseParameters": {"contentType": "application/json", **response},
        "inferenceId": job_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if status == "Failed":
        message["failureReason"] = "ClientError: Received client error (413) from primary with message ..."
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": json.dumps(message)}}]}


def sagemaker_job_functions(topic_arn: str) -> tuple[Any, Any]:
    """The GPU/Inferentia stacks' API function (invoke_endpoint) and job events function."""
    env = {
        "SUPERRES_OUTPUT_BUCKET": BUCKET,
        "SUPERRES_JOB_TABLE": "superres-jobs",
        "SUPERRES_JOB_TOPIC_ARN": topic_arn,
        "SUPERRES_ENDPOINT_NAME": "superres-endpoint",
        "SUPERRES_ASYNC_ENDPOINT_NAME": "superres-async",
        "SUPERRES_MODEL_X4": "realesr-animevideov3",
        "SUPERRES_FACE_ENABLED": "false",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        api = importlib.reload(importlib.import_module("lambda_sr.invoke_endpoint")).handler
        events = importlib.reload(importlib.import_module("lambda_sr.job_events")).handler
    return api, events


def test_gpu_variant_jobs_on_a_sagemaker_async_endpoint(lambda_jobs, topic, astronaut) -> None:
    from moto.backends import get_backend

    arn, delivered = topic
    api, events = sagemaker_job_functions(arn)
    s3 = boto3.client("s3")
    good = {"img": b64(png(astronaut, 96)), "scale": 4, "context": {"abc": 123}}
    status, job, _ = call(api, "POST", "/jobs", good, headers={"Idempotency-Key": "g-1"})
    assert status == 202 and job["state"] == "queued", job
    assert call(api, "POST", "/jobs", good, headers={"Idempotency-Key": "g-1"})[1]["id"] == job["id"]
    status, big, _ = call(api, "POST", "/jobs", {"img": b64(png(astronaut, 200)), "scale": 4})
    assert status == 202
    # Checked and fetched before any GPU time: a bad image is refused at once, and no job is left.
    status, refused, _ = call(
        api, "POST", "/jobs", {"img": b64(b"GIF89a" + bytes(64))}, headers={"Idempotency-Key": "g-2"}
    )
    assert status == 415 and refused["code"] == "unsupported_image"
    # Each job is one InvokeEndpointAsync, its input the container's request, in the bucket.
    invoked = get_backend("sagemaker-runtime")["123456789012"][REGION].async_results["superres-async"]
    assert set(invoked) == {f"s3://{BUCKET}/async-in/{job['id']}.json", f"s3://{BUCKET}/async-in/{big['id']}.json"}
    # What the endpoint does with each: the real container app's /invocations (a container
    # with a small output limit refuses the second with its own 413).
    with serving(local_app(settings(max_output_pixels=500 * 500))) as container:
        answers = {
            name: httpx.post(
                container + "/invocations",
                timeout=60,
                headers={"content-type": "application/json"},
                content=s3.get_object(Bucket=BUCKET, Key=f"async-in/{record['id']}.json")["Body"].read(),
            )
            for name, record in (("good", job), ("big", big))
        }
    assert (answers["good"].status_code, answers["big"].status_code) == (200, 413)
    s3.put_object(Bucket=BUCKET, Key=f"async-out/{job['id']}.out", Body=answers["good"].content)
    s3.put_object(Bucket=BUCKET, Key=f"async-failed/{big['id']}-error.out", Body=answers["big"].content)
    assert call(api, "GET", f"/jobs/{job['id']}")[1]["state"] == "queued"
    events(
        sagemaker_notification(job["id"], "Completed", outputLocation=f"s3://{BUCKET}/async-out/{job['id']}.out"),
        LambdaContext(),
    )
    events(
        sagemaker_notification(
            big["id"], "Failed", failureLocation=f"s3://{BUCKET}/async-failed/{big['id']}-error.out"
        ),
        LambdaContext(),
    )
    status, done, _ = call(api, "GET", f"/jobs/{job['id']}")
    assert status == 200 and done["state"] == "succeeded" and done["result"]["context"] == {"abc": 123}
    check(done, "Job")
    _, info, _ = fetch_image(done["result"]["result_url"])
    assert (info.format, info.width, info.height) == ("png", 384, 384)
    _, failed, _ = call(api, "GET", f"/jobs/{big['id']}")
    assert failed["state"] == "failed" and failed["status"] == 413 and failed["error"]["code"] == "too_large"
    notes = {note["id"]: note for note in delivered()}
    assert set(notes) == {job["id"], big["id"]}
    assert notes[job["id"]]["image_url"] == [f"s3://{BUCKET}/results/{job['id']}.png"]
    assert notes[big["id"]]["result"] is False and "250,000 pixels" in notes[big["id"]]["error"]["message"]
    # A notification delivered again (SNS retries) changes nothing.
    events(
        sagemaker_notification(job["id"], "Completed", outputLocation=f"s3://{BUCKET}/async-out/{job['id']}.out"),
        LambdaContext(),
    )
    assert delivered() == []


def test_the_job_events_function_fits_the_invoke_endpoint_zip() -> None:
    """lambda_sr.job_events ships in the zip without torch, numpy or OpenCV."""
    import os
    import subprocess
    import sys

    code = "import sys, lambda_sr.job_events; print(sorted({'torch', 'numpy', 'cv2'} & set(sys.modules)))"
    env = {**os.environ, "SUPERRES_JOB_TABLE": "jobs", "SUPERRES_OUTPUT_BUCKET": "out", "AWS_DEFAULT_REGION": REGION}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"
