"""Thin Lambda entry points; the logic lives in runner.lambdas.records and runner.producer.job_request."""
