"""What Galley adds to the Celery worker: visibility heartbeat, immediate release on restore."""
