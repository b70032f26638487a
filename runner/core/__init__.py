"""The light core every tier stands on: boto3 and pydantic only, never Celery or kombu.

- variables.py: the environment variables' names, defaults and value checks (no pydantic);
- settings.py: typed settings per process kind, read from the environment, validated at start;
- producer_config.py: a producer's settings read without pydantic on a plain enqueue, anything
  doubtful handed to settings.py's model;
- aws.py: the one AWS client factory (timeouts and retries per use, cached per process);
- limits.py: the AWS quotas Galley relies on, each with its source;
- batching.py: splitting work into the batches SQS accepts (count, and bytes);
- contracts.py: typed task inputs a producer checks before sending;
- delays.py: the arithmetic of SQS delay hops (countdown/eta longer than 900 s);
- deadletter.py: sending a message that cannot be run to its DLQ, with the reason.
"""
