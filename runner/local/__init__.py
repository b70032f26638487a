"""The local stack: template.yaml deployed into an embedded moto on 127.0.0.1, and a worker.

- embedded.py: moto server, the deployed stack's queues and bucket, the worker;
- supervisor.py: ``galley local up``: one stack at a time, its port, names and data kept across
  restarts, everything it started stopped however it ends;
- control.py: ``galley local status`` and ``galley local down``, and what a killed `local up`
  left running;
- state.py: the state file (``.galley/local.json``) and the lock that says a stack runs;
- resources.py: what a process needs to attach to the stack (``galley local env``);
- snapshot.py: the stack's messages and objects, saved as moto stops and put back as it starts;
- motoserver.py: moto's server, its S3 conditional writes made atomic (as on AWS), its data
  saved as it stops;
- sam.py: template.yaml as the source of truth: translated offline, deployed into moto;
- scheduler.py, cadence.py: the template's schedules fired locally, on their real cadence;
- eventbridge.py, schedule_check.py: beat_schedule as EventBridge Scheduler expressions, checked
  against the template's schedules (``galley schedules``); routing.py: the queue each entry's
  task goes to by the app's routing, asked of the app in a child process;
- process.py: child processes (moto, workers): start, wait for, stop by pid;
- demo.py: ``galley demo``: the whole path in one run.
"""
