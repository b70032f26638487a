"""Publish an upload once it exists, retrying with exponential backoff while it does not."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from runner import app
from runner.core import aws

PUBLISHED_PREFIX = "published/"


class UploadNotReady(Exception):
    """The object is not in S3 yet; the task retries later."""


@app.task(
    name="tasks.uploads.publish_upload",
    autoretry_for=(UploadNotReady,),
    retry_backoff=2,  # 2 s, 4 s, 8 s, ... between tries
    retry_backoff_max=60,
    retry_jitter=True,  # spread retries of many tasks
    max_retries=6,  # then the task FAILS with UploadNotReady as its result
)
def publish_upload(bucket: str, key: str) -> dict[str, Any]:
    """Copy ``s3://bucket/key`` to ``published/key`` once the uploader has written it."""
    s3 = aws.client("s3")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            raise UploadNotReady(f"s3://{bucket}/{key} does not exist yet") from None
        raise
    target = PUBLISHED_PREFIX + key
    s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
    return {"published_key": target, "size": head["ContentLength"]}
