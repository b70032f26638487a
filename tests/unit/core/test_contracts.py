from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import types
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.core import contracts
from runner.errors import InvalidTaskInput
from tasks.schemas import SCHEMAS, SummarizeCsv

TASK = "tasks.reports.summarize_csv"


def test_positional_and_keyword_arguments_map_onto_the_model() -> None:
    checked = contracts.check(TASK, ["bucket-1", "in/a.csv"], {"output_key": "out.json"})
    assert checked == SummarizeCsv(bucket="bucket-1", key="in/a.csv", output_key="out.json")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([], {}, "bucket: Field required; key: Field required"),
        (["Not_A_Bucket", "k"], {}, "bucket: String should match pattern"),
        (["b12", "k"], {"colour": "red"}, "colour: Extra inputs are not permitted"),
        (["b12", "k", None, "extra"], {}, "takes at most 3 arguments"),
        (["b12"], {"bucket": "b13", "key": "k"}, "got bucket both by position and by name"),
    ],
)
def test_bad_calls_name_the_field(
    args: list[object], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidTaskInput, match=message) as error:
        contracts.check(TASK, args, kwargs)
    assert str(error.value).startswith(TASK)


def test_untyped_tasks_are_not_checked() -> None:
    assert contracts.check("tasks.imports.import_records", [1, 2, 3, 4, 5], {"any": 1}) is None


def test_the_names_read_from_the_source_are_those_schemas_lists() -> None:
    # The producer tells typed from untyped tasks by reading tasks/schemas.py's source.
    assert contracts.listed() == frozenset(SCHEMAS)


_LITERAL = "from pydantic import BaseModel\nclass M(BaseModel): pass\n"


@pytest.mark.parametrize(
    ("source", "names"),
    [
        (_LITERAL + 'SCHEMAS = {"a.b": M, "a.c": M}', {"a.b", "a.c"}),
        (_LITERAL + 'SCHEMAS: dict[str, type] = {"a.b": M}', {"a.b"}),
        (_LITERAL + "SCHEMAS = {}", set()),
        ("", None),  # no SCHEMAS: registry() says so
        (_LITERAL + "SCHEMAS = dict(a=M)", None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nSCHEMAS["a.c"] = M', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nSCHEMAS.update(more)', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nSCHEMAS = {}', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M, **OTHER}', None),
        (_LITERAL + "SCHEMAS = {NAME: M}", None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nfrom tasks.more_schemas import *', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nfrom .more import N', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nimport tasks.more_schemas', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nglobals()["X"] = 1', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\nsetattr(sys.modules[__name__], "X", 1)', None),
        (_LITERAL + 'SCHEMAS = {"a.b": M}\ndef f():\n    global SCHEMAS', None),
    ],
)
def test_names_are_read_from_the_source_only_when_it_alone_decides_them(
    source: str, names: set[str] | None
) -> None:
    # GIVEN a schema module's source
    # WHEN its names are read without running it
    read = contracts._literal_names(ast.parse(source))
    # THEN a plain dict literal gives its keys; anything else is left to importing the module
    assert read == (None if names is None else frozenset(names))


def test_every_input_model_is_listed_in_schemas() -> None:
    """The producer reads SCHEMAS; the worker reads each task's input_model. They must agree."""
    code = (
        "import json; from runner.runtime.app import app; app.loader.import_default_modules(); "
        "print(json.dumps({n: f'{t.input_model.__module__}.{t.input_model.__name__}' "
        "for n, t in app.tasks.items() if getattr(t, 'input_model', None)}))"
    )
    env = {
        "GALLEY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
        "GALLEY_RESULTS_BUCKET": "b12",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**_base_env(), **env},
    )
    declared = json.loads(out.stdout)
    listed = {name: f"{m.__module__}.{m.__name__}" for name, m in SCHEMAS.items()}
    assert declared == listed
    assert TASK in declared


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GALLEY_")}


_STATEMENTS = [
    "def SCHEMAS():\n    return {}\n",
    "async def SCHEMAS():\n    pass\n",
    "class SCHEMAS:\n    pass\n",
    "try:\n    raise ValueError\nexcept ValueError as SCHEMAS:\n    pass\n",
    'match {"k": {}}:\n    case {"k": SCHEMAS}:\n        pass\n',
    "match {}:\n    case {**SCHEMAS}:\n        pass\n",
    "match [1]:\n    case [*SCHEMAS]:\n        pass\n",
    'locals().update(SCHEMAS={"x.y": M})\n',
    'sys.modules[__name__].__dict__.update(SCHEMAS={"x.y": M})\n',
    "import json as SCHEMAS\n",
    "def f(SCHEMAS=1):\n    return SCHEMAS\n",
    "X = 1\n",
    "def g():\n    return 1\n",
]


@given(st.lists(st.sampled_from(_STATEMENTS), max_size=3))
def test_names_read_from_the_source_are_those_the_module_ends_with(extra: list[str]) -> None:
    # GIVEN a schema module binding SCHEMAS to a dict literal, then other statements
    source = "import sys\nclass M: pass\n" + 'SCHEMAS = {"a.b": M}\n' + "".join(extra)
    # WHEN its names are read without running it, and it is run
    read = contracts._literal_names(ast.parse(source))
    module = types.ModuleType("galley_fuzzed_schemas")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, module.__name__, "exec"), module.__dict__)  # noqa: S102
    finally:
        del sys.modules[module.__name__]
    value = module.__dict__.get("SCHEMAS")
    ran = frozenset(value) if isinstance(value, dict) else value
    # THEN the names read, when there are any, are the keys it ends with
    assert read is None or read == ran


def test_names_added_by_the_tasks_package_are_seen(tmp_path: Any) -> None:
    """tasks/__init__.py imports tasks.schemas as it loads (the producer's find_spec runs it)
    and adds a model: the module's source alone does not say every name."""
    package = tmp_path / "tasks"
    package.mkdir()
    (package / "schemas.py").write_text(
        "from pydantic import BaseModel, ConfigDict\n"
        "class M(BaseModel):\n    model_config = ConfigDict(extra='forbid')\n    n: int\n"
        'SCHEMAS = {"tasks.a": M}\n'
    )
    (package / "__init__.py").write_text(
        'from tasks import schemas\nschemas.SCHEMAS["tasks.b"] = schemas.M\n'
    )
    code = (
        "from runner.core import contracts\n"
        "from runner.errors import InvalidTaskInput\n"
        "try:\n    contracts.check('tasks.b', ['x'], {})\n"
        "except InvalidTaskInput as e:\n    print('refused:', e)\n"
        "else:\n    print('sent unchecked')\n"
    )
    env = {**_base_env(), "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.stdout.startswith("refused: tasks.b: n:"), out.stdout + out.stderr
