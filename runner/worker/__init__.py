"""What Galley adds to the Celery worker.

- transport.py: the SQS transport: kombu's channel for sending, Galley's receive path;
- receiver.py: the receive thread (boto3, timeouts, backoff);
- ledger.py, custody.py: every message the process holds, until it is settled;
- settler.py: deletes, releases and dead letters, batched, on the queue received from;
- heartbeat.py: keeps every held message invisible;
- refusals.py, request.py: refused and failed jobs dead-lettered with the reason;
- startup.py: start-up checks; hops.py: delay hops; protection.py: ECS scale-in protection.
"""
