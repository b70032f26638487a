"""Fixtures of the runtime unit tests."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from runner.local import motoserver
from tests.unit.runtime.s3_results import BUCKET


@pytest.fixture
def s3(moto_in_process: None) -> Any:
    """The results bucket on in-process moto, conditional writes atomic as S3's are."""
    motoserver.serialize_s3_objects()
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client
