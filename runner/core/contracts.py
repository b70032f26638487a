"""Typed task inputs: pydantic models a producer checks before sending, without the task module.

A task declares its input model with ``@app.task(..., input_model=Model)``. The models live in
``tasks/schemas.py``, a module that imports pydantic only, and are listed there in ``SCHEMAS``
(task name -> model). So:

- the boto3-only producer (a Lambda with no Celery, no task dependencies) imports
  ``tasks.schemas`` and refuses a bad call before anything is sent;
- the worker checks the same model again before the task runs (a message may come from
  anywhere), and a bad one fails with the validation error instead of deep inside the task;
- a test checks that every task's ``input_model`` is the model ``SCHEMAS`` lists for it.

Arguments map onto the model's fields in declaration order, then keyword arguments; the message
itself is sent unchanged (what Celery would send for the same call).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError

from runner.errors import InvalidTaskInput

#: The module holding the input models (pydantic only; no task code, no heavy imports).
SCHEMA_MODULE = "tasks.schemas"


@cache
def registry() -> Mapping[str, type[BaseModel]]:
    """Task name -> input model, from ``tasks.schemas.SCHEMAS`` (empty if there is none)."""
    try:
        module = importlib.import_module(SCHEMA_MODULE)
    except ModuleNotFoundError as error:
        if error.name in (SCHEMA_MODULE, SCHEMA_MODULE.split(".")[0]):
            return {}
        raise
    return dict(getattr(module, "SCHEMAS", {}))


def check(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    model: type[BaseModel] | None = None,
) -> BaseModel | None:
    """Validate a call against the task's model; None if the task declares none."""
    model = model or registry().get(task_name)
    if model is None:
        return None
    fields = list(model.model_fields)
    if len(args) > len(fields):
        raise InvalidTaskInput(
            f"{task_name} takes at most {len(fields)} arguments ({', '.join(fields)}), "
            f"got {len(args)}"
        )
    values = dict(zip(fields, args, strict=False))
    both = sorted(set(values) & set(kwargs or {}))
    if both:
        raise InvalidTaskInput(f"{task_name} got {', '.join(both)} both by position and by name")
    try:
        return model.model_validate({**values, **(kwargs or {})})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidTaskInput(f"{task_name}: {problems}") from None
