"""Input models of the typed tasks. Imports pydantic only: producers load this module without
loading the tasks (see runner/core/contracts.py). List every model in SCHEMAS under its task
name."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: S3 bucket naming rules (3-63 lowercase letters, digits, '.', '-').
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class SummarizeCsv(BaseModel):
    """tasks.reports.summarize_csv"""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(pattern=BUCKET_PATTERN)
    key: str = Field(min_length=1, max_length=1024)
    output_key: str | None = Field(default=None, min_length=1, max_length=1024)


SCHEMAS: dict[str, type[BaseModel]] = {
    "tasks.reports.summarize_csv": SummarizeCsv,
}
