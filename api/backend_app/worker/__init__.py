"""Worker machinery: the queues, the task registry, the Celery and RQ apps, the worker
classes, the runtime that runs async code from a job, and task tracking.

Nothing here imports a domain: domains declare their tasks in `<domain>/tasks.py` with
the decorators of `backend_app.worker.registry`, which finds those modules by name.
"""
