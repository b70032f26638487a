"""Everything that runs in Lambda: the handlers, and the consumer's logic behind one of them.

Handlers parse the event, call the library and format the answer:
- consumer.py: the SQS event source mapping's target (``runner.lambdas.consumer.handler``);
- enqueue.py: the example producer (HTTP API or direct invoke); boto3 only, no Celery;
- schedule.py: the EventBridge Scheduler target; boto3 only, no Celery.

The Lambda consumer's logic: records.py judges each record (runner.settlement) and runs it
through Celery's own execution path; budget.py keeps the invocation's time budget (SIGALRM);
settle.py deletes, defers, dead-letters and stores the failures of records.
"""
