"""The Celery app: configuration, task class, publish hooks, results and idempotency.

- app.py: the Celery app (``celery -A runner.app``): SQS broker through predefined queues, S3
  results, JSON only, late acks; it wires in the worker's transport and start-up checks;
- publish.py: every message with an eta leaves with its first SQS delay hop;
- backend.py, results.py: Celery's S3 backend riding out S3 faults; reading a job's state;
- idempotency/: duplicate deliveries and enqueues of one piece of work run it once;
- jobs.py: sending a job through the app, checked first (``galley enqueue``);
- schedules.py: the project's periodic jobs, ``beat_schedule`` in ``tasks/schedules.py``.
"""
