"""A batch from push to report: tasks in (``push``), outcomes counted exactly once (``ledger``),
reports read back (``report``), the progress feed (``events``), running totals for metrics (``totals``)."""
