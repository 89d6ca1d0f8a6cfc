"""Benchmarks: plain RQ 2.12 and rq-serviceq side by side (``python -m bench``).

Task functions and callbacks live in ``bench.tasks`` so worker processes can
import them; ``bench.latency_proxy`` simulates a distant Redis.
"""
