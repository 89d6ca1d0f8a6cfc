"""``python -m bench --peers``: rq-serviceq beside RQ, Celery, Dramatiq, arq, SAQ and BullMQ.

``run`` is the driver (standard library and ``rq_serviceq.testing.RedisServer``); one
``*_peer`` module per system is its adapter, run with the interpreter of that system's
bench-only venv (``venvs``), and ``bullmq.cjs`` is BullMQ's side in Node.  See
docs/benchmarks.md, "The peers, side by side".
"""
