"""Where tasks run: the RQ worker (``worker``), claiming a group (``claim``), its one path through
run, journal, give-back and settle (``cycle``, ``run``, ``journal``), leases and their keeper, the audit
of RQ's own tools (``reconcile``), pause/stop notices (``control``), supervisors and ``start()``."""
