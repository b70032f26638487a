"""Thin Lambda entry points; the logic lives in runner.consumer and runner.requests."""
