"""The ``galley`` command: parses, calls the library, formats. No logic of its own.

- main.py: ``galley`` and its commands (local, enqueue, result, doctor, demo, ...);
- dlq.py: ``galley dlq``;
- schedules.py: ``galley schedules``, and ``galley local up``'s lines about schedules;
- failures.py: how every command turns a known failure into one line.
"""
