"""Operating a stack: checks against AWS, dead-letter queues, reading a queue without consuming it.

- checks.py: the start-up checks (queues, DLQ, bucket, visibility) the worker and ``galley doctor``
  run;
- dlq.py: list, show, redrive and purge a dead-letter queue (``galley dlq``);
- sqs_sweep.py: read every message of a queue once, then release them.
"""
