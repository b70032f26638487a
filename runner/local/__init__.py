"""The local stack: template.yaml deployed into an embedded moto on 127.0.0.1, and a worker.

- embedded.py: moto server, the deployed stack's queues and bucket, the worker (``galley local``);
- motoserver.py: moto's server, its S3 conditional writes made atomic (as on AWS);
- sam.py: template.yaml as the source of truth: translated offline, deployed into moto;
- scheduler.py, cadence.py: the template's schedules fired locally, on their real cadence;
- eventbridge.py, schedule_check.py: beat_schedule as EventBridge Scheduler expressions, checked
  against the template's schedules (``galley schedules``); routing.py: the queue each entry's
  task goes to by the app's routing, asked of the app in a child process;
- process.py: child processes (moto, workers): start, wait for, stop by pid;
- demo.py: ``galley demo``: the whole path in one run.
"""
