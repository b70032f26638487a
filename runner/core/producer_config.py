"""The producer's settings read straight from the environment: no pydantic on a plain enqueue.

A Lambda that only enqueues would otherwise load pydantic and pydantic-settings (more than a
third of boto3's own import time) to read five variables. :func:`read` reads them with the
checks the settings model itself uses (runner.core.variables) and returns a
:class:`ProducerConfig`. It does not replace :class:`runner.core.settings.ProducerSettings`, it
only goes ahead of it: whatever it is not sure to read exactly as the model would (a value the
checks refuse, a missing queue URL, a variable name in lower case, a number written unusually) is
handed to the model, which gives the value or the SettingsError naming the variable, as before.
tests/unit/core/test_producer_config.py holds the two to the same results.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from runner.core import limits, variables

if TYPE_CHECKING:
    from runner.core.settings import ProducerSettings


class ProducerOptions(Protocol):
    """What a producer reads from its settings: a :class:`ProducerConfig` or any
    :class:`~runner.core.settings.ProducerSettings` (a WorkerSettings too)."""

    @property
    def queue_url(self) -> str: ...
    @property
    def long_queue_url(self) -> str | None: ...
    @property
    def results_bucket(self) -> str | None: ...
    @property
    def payload_threshold_bytes(self) -> int: ...
    @property
    def region(self) -> str: ...
    @property
    def endpoint_url(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class ProducerConfig:
    """ProducerSettings' fields, as the model would hold them for the same environment."""

    queue_url: str
    long_queue_url: str | None = None
    results_bucket: str | None = None
    payload_threshold_bytes: int = variables.DEFAULT_PAYLOAD_THRESHOLD_BYTES
    region: str = variables.DEFAULT_REGION
    endpoint_url: str | None = None

    @property
    def queue_name(self) -> str:
        return variables.queue_name_from_url(self.queue_url)


FIELDS = tuple(field.name for field in dataclasses.fields(ProducerConfig))

#: Field -> the variable it is read from (region: the first of its variables that is set).
_VARIABLES = {
    "queue_url": (variables.QUEUE_URL,),
    "long_queue_url": (variables.LONG_QUEUE_URL,),
    "results_bucket": (variables.RESULTS_BUCKET,),
    "payload_threshold_bytes": (variables.PAYLOAD_THRESHOLD_BYTES,),
    "region": (variables.AWS_REGION, variables.AWS_DEFAULT_REGION),
    "endpoint_url": (variables.AWS_ENDPOINT_URL,),
}
_NAMES = frozenset(name for names in _VARIABLES.values() for name in names)
#: Variables the model also reads, though Galley names none of them: a field with an alias
#: (region, endpoint_url) is read by its own name too (GALLEY_ + the field's name), after the
#: alias. The quick reader leaves an environment with one of them to the model.
_MODEL_ALSO_READS = frozenset(f"GALLEY_{name.upper()}" for name in ("region", "endpoint_url"))
_DIGITS = re.compile(r"[1-9][0-9]{0,9}")


def read(queue_url: str | None = None) -> ProducerConfig | ProducerSettings:
    """The producer's settings from the environment, ``queue_url`` winning over
    GALLEY_QUEUE_URL; raises SettingsError naming the variable, as ``load(ProducerSettings)``."""
    config = _quick(os.environ, queue_url)
    if config is not None:
        return config
    return _model({"queue_url": queue_url} if queue_url else {})


def with_queue(settings: ProducerOptions, queue_url: str) -> ProducerOptions:
    """``settings`` sending to ``queue_url`` instead, checked as GALLEY_QUEUE_URL would be."""
    if isinstance(settings, ProducerConfig) and isinstance(queue_url, str):
        try:
            return dataclasses.replace(settings, queue_url=variables.check_queue_url(queue_url))
        except ValueError:
            pass  # the model names the variable
    return _model({**{name: getattr(settings, name) for name in FIELDS}, "queue_url": queue_url})


def _model(overrides: Mapping[str, Any]) -> ProducerSettings:
    from runner.core.settings import ProducerSettings, load  # pydantic: only when needed

    return load(ProducerSettings, **overrides)


def _quick(environ: Mapping[str, str], queue_url: str | None) -> ProducerConfig | None:
    """The config, or None where the model must decide (see the module's docstring)."""
    if queue_url is not None and not isinstance(queue_url, str):
        return None
    if any(key.upper() in _NAMES and key != key.upper() for key in environ):
        return None  # pydantic-settings reads names in any case; which one wins is its call
    if any(key.upper() in _MODEL_ALSO_READS for key in environ):
        return None
    raw: dict[str, str] = {}
    for field, names in _VARIABLES.items():
        value = next((environ[name] for name in names if environ.get(name)), None)
        if value is not None:  # an empty variable counts as unset (env_ignore_empty)
            raw[field] = value
    if queue_url:
        raw["queue_url"] = queue_url
    if "queue_url" not in raw:
        return None
    threshold = raw.get("payload_threshold_bytes")
    if threshold is not None and not _DIGITS.fullmatch(threshold):
        return None
    try:
        config = ProducerConfig(
            queue_url=variables.check_queue_url(raw["queue_url"]),
            long_queue_url=_optional(variables.check_queue_url, raw.get("long_queue_url")),
            results_bucket=variables.check_bucket_name(raw.get("results_bucket")),
            region=raw.get("region", variables.DEFAULT_REGION),
            endpoint_url=variables.check_endpoint_url(raw.get("endpoint_url")),
            **({"payload_threshold_bytes": int(threshold)} if threshold else {}),
        )
    except ValueError:
        return None
    in_range = (
        variables.MIN_PAYLOAD_THRESHOLD_BYTES
        <= config.payload_threshold_bytes
        <= limits.MAX_MESSAGE_BYTES
    )
    return config if in_range else None


def _optional(check: Any, value: str | None) -> str | None:
    return None if value is None else check(value)
