"""What runs: the systems in round order, the workloads, their sizes and each system's configurations.

Standard library only: the driver and every adapter (in its own venv) read it.  The first
configuration of a workload is the one an adapter runs when none is named.  Configurations
are each system's documented fastest (docs/benchmarks.md, "The peers, side by side").
"""

from __future__ import annotations

SYSTEMS = ("rq-serviceq", "rq", "celery", "dramatiq", "arq", "saq", "bullmq")
WORKLOADS = ("W1", "W2", "W3", "W4", "W4c", "W5")
SIZES = {"W1": 50_000, "W2": 20_000, "W3": 10_000, "W4": 2_000, "W4c": 5_000, "W5": 2_000}
MODULES = {
    "rq-serviceq": "bench.peers.sq_peer",
    "rq": "bench.peers.rq_peer",
    "celery": "bench.peers.celery_peer",
    "dramatiq": "bench.peers.dramatiq_peer",
    "arq": "bench.peers.arq_peer",
    "saq": "bench.peers.saq_peer",
    "bullmq": "bench.peers.bullmq_peer",
}
# W1 has one way per system (no configuration).  W4 counts Redis commands with each system's
# defaults (arq's poll_delay 0.5 s among them); W4c reads Redis CPU with its fastest W2 configuration.
CONFIGS: dict[str, dict[str, tuple[str, ...]]] = {
    "rq-serviceq": {"W2": ("c1",), "W3": ("c1",), "W4": ("c1",), "W4c": ("c1",), "W5": ("threads8", "async8")},
    "rq": {"W2": ("simple",), "W3": ("simple",), "W4": ("simple",), "W4c": ("simple",), "W5": ("c1",)},
    "celery": {"W2": ("solo", "threads8"), "W3": ("solo",), "W4": ("solo",), "W4c": ("solo",), "W5": ("threads8",)},
    "dramatiq": {"W2": ("p1t8",), "W3": ("p2t8",), "W4": ("p1t8",), "W4c": ("p1t8",), "W5": ("p1t8",)},
    "arq": {"W2": ("poll10ms",), "W3": ("poll10ms",), "W4": ("default",), "W4c": ("poll10ms",), "W5": ("j8-poll10ms",)},
    "saq": {"W2": ("c10", "c50"), "W3": ("c10",), "W4": ("c10",), "W4c": ("c50",), "W5": ("c8",)},
    "bullmq": {"W2": ("c1", "c50"), "W3": ("c50",), "W4": ("c1",), "W4c": ("c50",), "W5": ("c8",)},
}
# Wall-clock limits for one adapter run (enqueue only, or processing).
LIMITS = {"W1": 240.0, "W2": 420.0, "W3": 420.0, "W4": 420.0, "W4c": 420.0, "W5": 420.0}
