"""``/ui``: the operator's console — the service queues, a queue's controls, workers and batch history,
and for one batch its live progress, chart and report (``docs/http.md``, "The pages").

``pages`` has the routes, ``markup`` the HTML they share, ``history`` the batch-history picture and
``assets/`` the scripts and style sheet inlined in every page.
"""

from rq_serviceq.http.ui.history import history_svg
from rq_serviceq.http.ui.pages import router

__all__ = ["history_svg", "router"]
