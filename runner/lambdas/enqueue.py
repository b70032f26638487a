"""Example producer: HTTP API (payload 2.0) or direct invoke -> a Galley job; returns its id."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import ValidationError

from runner.errors import CallError, GalleyError, SettingsError
from runner.producer import job_request


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def _payload(event: Any) -> Any:
    """The request: an HTTP API event's JSON body, or a direct invocation's event itself."""
    if not isinstance(event, dict) or "requestContext" not in event or "body" not in event:
        return event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return json.loads(body)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """202 with ``{"task_id"}``; 400 with the reason for a bad request; 500 if it was not sent."""
    try:
        request = job_request.JobRequest.model_validate(_payload(event))
    except (ValueError, ValidationError) as error:
        return _response(400, {"error": "bad request", "detail": str(error)})
    try:
        task_id = job_request.submit(request)
    except (CallError, SettingsError) as error:  # too large, bad input, no long queue
        return _response(400, {"error": "cannot enqueue", "detail": str(error)})
    except GalleyError as error:  # SQS refused it
        return _response(500, {"error": "not sent", "detail": str(error)})
    return _response(202, {"task_id": task_id, "task": request.task})
