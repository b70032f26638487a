"""The settlement rules both runtimes share: what happens to a received message.

- rules.py: before any task code runs, judge a message: run, defer (delay hop), expire, or
  dead-letter with the reason;
- links.py: whether a job's callbacks, errbacks and chain can be sent, checked before it runs.

Used by the Fargate worker (runner.worker) and the Lambda consumer (runner.lambdas.records).
"""
