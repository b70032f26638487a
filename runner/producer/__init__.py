"""Enqueueing with boto3 only: what Lambdas, web apps and scripts import (no Celery, no kombu).

- sender.py: ``enqueue``/``enqueue_many``: messages stock Celery workers understand;
- job_request.py: a job as an API caller or a schedule states it, validated, then enqueued.
"""
