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

Importing ``tasks.schemas`` loads pydantic, which costs a producer Lambda about a third of boto3's
own import time on every cold start. So a call to a task without a model does not import it:
:func:`listed` reads the task names from the module's source (``SCHEMAS = {"name": Model, ...}``,
a dict literal), and a name not among them has no model. Where the source does not say the names
plainly (SCHEMAS built or changed by code, another ``tasks`` module imported), the module is
imported for every call, as before. Neither this module nor a plain call loads pydantic.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from runner.errors import InvalidTaskInput

if TYPE_CHECKING:
    from pydantic import BaseModel

#: The module holding the input models (pydantic only; no task code, no heavy imports).
SCHEMA_MODULE = "tasks.schemas"
#: The name of its task name -> model mapping.
SCHEMAS = "SCHEMAS"
#: Calls through which a module can bind names its source does not show.
_DYNAMIC_CALLS = frozenset({"globals", "locals", "vars", "setattr", "exec", "eval", "__import__"})


@cache
def registry() -> Mapping[str, type[BaseModel]]:
    """Task name -> input model, from ``tasks.schemas.SCHEMAS`` (empty if there is none)."""
    try:
        module = importlib.import_module(SCHEMA_MODULE)
    except ModuleNotFoundError as error:
        if _is_schema_module(error):
            return {}
        raise
    return dict(getattr(module, SCHEMAS, {}))


@cache
def listed() -> frozenset[str] | None:
    """The task names ``SCHEMAS`` lists, read from ``tasks.schemas``' source without running it;
    None when the source does not say them plainly (then :func:`registry` must be asked).
    Finding the module runs the ``tasks`` package; if that loaded the module (and may have
    changed SCHEMAS), the module itself is asked."""
    try:
        spec = importlib.util.find_spec(SCHEMA_MODULE)
    except ModuleNotFoundError as error:
        if _is_schema_module(error):
            return frozenset()
        raise
    if spec is None:
        return frozenset()
    if SCHEMA_MODULE in sys.modules:  # loaded already (by the tasks package, say): ask it
        return frozenset(registry())
    loader: Any = spec.loader
    try:
        source = loader.get_source(SCHEMA_MODULE) if hasattr(loader, "get_source") else None
        return None if source is None else _literal_names(ast.parse(source))
    except (ImportError, OSError, SyntaxError, ValueError):
        return None  # importing it tells, or raises what is wrong with it


def check(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    model: type[BaseModel] | None = None,
) -> BaseModel | None:
    """Validate a call against the task's model; None if the task declares none."""
    if model is None:
        names = listed()
        if names is not None and task_name not in names:
            return None  # no model: tasks.schemas (and pydantic) stay unloaded
        model = registry().get(task_name)
    if model is None:
        return None
    from pydantic import ValidationError  # loaded with the model already

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


def _is_schema_module(error: ModuleNotFoundError) -> bool:
    """Whether the module missing is tasks.schemas or tasks (no models), not one it imports."""
    return error.name in (SCHEMA_MODULE, SCHEMA_MODULE.split(".")[0])


def _literal_names(tree: ast.Module) -> frozenset[str] | None:
    """The keys of ``SCHEMAS = {...}`` when that one statement alone decides them: SCHEMAS is
    bound once, at the top, to a dict literal with string keys, and named nowhere else (not
    changed later, not set through globals() or setattr, not from another tasks module)."""
    bound = [value for stmt in tree.body if (value := _schemas_value(stmt)) is not None]
    mentions = sum(_mentions_schemas(node) for node in ast.walk(tree))
    if len(bound) != 1 or mentions != 1 or any(_dynamic(node) for node in ast.walk(tree)):
        return None
    value = bound[0]
    if not isinstance(value, ast.Dict):
        return None
    names = [key.value if isinstance(key, ast.Constant) else None for key in value.keys]
    if not all(isinstance(name, str) for name in names):
        return None  # a computed key, or **other
    return frozenset(str(name) for name in names)


def _schemas_value(stmt: ast.stmt) -> ast.expr | None:
    """What ``stmt`` binds SCHEMAS to, if it is ``SCHEMAS = ...`` or ``SCHEMAS: T = ...``."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target: ast.expr = stmt.targets[0]
    elif isinstance(stmt, ast.AnnAssign):
        target = stmt.target
    else:
        return None
    return stmt.value if isinstance(target, ast.Name) and target.id == SCHEMAS else None


def _mentions_schemas(node: ast.AST) -> bool:
    """Whether ``node`` names SCHEMAS: reads it, or binds it in any form (def, class, import
    ... as, except ... as, a match capture, a keyword argument, global)."""
    if isinstance(node, ast.Name):
        return node.id == SCHEMAS
    if isinstance(node, ast.Attribute):
        return node.attr == SCHEMAS
    if isinstance(node, ast.Constant):
        return node.value == SCHEMAS
    if isinstance(node, ast.Global | ast.Nonlocal):
        return SCHEMAS in node.names
    return any(getattr(node, name, None) == SCHEMAS for name in ("name", "asname", "rest", "arg"))


def _dynamic(node: ast.AST) -> bool:
    """A star import, another module of the package, or a call or ``__dict__`` binding names
    unseen (``locals()`` is the module's namespace at its top level)."""
    if isinstance(node, ast.ImportFrom):
        package = SCHEMA_MODULE.split(".")[0]
        module = node.module or ""
        ours = node.level > 0 or module == package or module.startswith(package + ".")
        return ours or any(alias.name == "*" for alias in node.names)
    if isinstance(node, ast.Import):
        package = SCHEMA_MODULE.split(".")[0]
        return any(a.name == package or a.name.startswith(package + ".") for a in node.names)
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id in _DYNAMIC_CALLS
    return isinstance(node, ast.Attribute) and node.attr == "__dict__"
