from __future__ import annotations

from tasks.imports import validate_record
from tasks.reports import summarize_rows


def test_summary_counts_rows_and_sums_numeric_columns() -> None:
    rows = [
        {"region": "eu", "amount": "10.5", "qty": "1"},
        {"region": "us", "amount": "4.5", "qty": "x"},
    ]
    summary = summarize_rows(rows)
    assert summary["rows"] == 2
    assert summary["numeric_columns"] == {"amount": {"sum": 15.0, "min": 4.5, "max": 10.5}}


def test_summary_of_nothing() -> None:
    assert summarize_rows([]) == {"rows": 0, "numeric_columns": {}}


def test_record_validation_reasons() -> None:
    assert validate_record({"name": "Ada", "email": "ada@example.com"}) is None
    assert validate_record({"name": "Ada", "email": "ada"}) == "email missing or malformed"
    assert validate_record({"name": " ", "email": "a@b"}) == "name missing"
    assert validate_record(["not", "a", "dict"]) == "not an object"
