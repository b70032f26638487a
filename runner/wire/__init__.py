"""What travels on the queue: the Celery protocol-2 message in kombu's SQS envelope.

- codec.py: encode and decode a task message exactly as Celery 5.7 + kombu 5.7 do;
- payloads.py: arguments too large for SQS travel through S3 (claim check);
- kombu_json.py, saferepr.py: vendored ports of kombu's JSON and Celery's saferepr (each file
  names its upstream version and licence).

Imports only the core: producers, both runtimes and the operator tools share it.
"""
