"""`GET /metrics` for operators: Prometheus text format, one answer for every API process.

Counters kept by the request path (HTTP) and by each process's database router are written to
prometheus-client's multiprocess files (`multiprocess.py`), so whichever process answers a
scrape reports the sum of all of them. Facts that live outside the processes (task records,
the outbox, queues in Redis, the state of each database node) are read when the scrape comes.
"""
