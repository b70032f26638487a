"""Galley: Celery on Amazon SQS with S3 results, local on moto, deployed with SAM."""
