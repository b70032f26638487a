"""Your tasks. Every module in this package is loaded by the worker; write ordinary Celery tasks:

from runner import app

@app.task
def my_job(x): ...
"""
