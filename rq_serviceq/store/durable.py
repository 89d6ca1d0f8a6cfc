"""Durability: how many replicas a write waits for (``WAIT``), and the error when fewer confirm it.

Replication is asynchronous: a primary acknowledges a write before its replicas have it, so a failover can
lose the last writes (docs/reliability.md).  A service queue's ``durable_replicas`` makes a push and a settle
wait, on the connection that wrote them, until that many replicas have them or ``durable_timeout`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rq_serviceq.models import Settings


@dataclass(frozen=True)
class Durable:
    """How many replicas a write waits for (``WAIT``), and how long at most: ``Settings.durable_replicas``."""

    replicas: int
    timeout: float  # seconds

    @classmethod
    def of(cls, settings: Settings) -> Durable | None:
        return cls(settings.durable_replicas, settings.durable_timeout) if settings.durable_replicas else None

    def command(self) -> tuple[bytes, bytes, bytes]:
        return b"WAIT", b"%d" % self.replicas, b"%d" % max(1, int(self.timeout * 1000))


class NotReplicated(Exception):
    """A write the primary made that fewer replicas than asked confirmed within the time allowed: it stands
    on the primary, and a failover now could lose it (docs/reliability.md).  A push's ``task_ids`` and
    ``batch_ids`` say what it wrote."""

    def __init__(self, replicas: int, durable: Durable) -> None:
        super().__init__(
            f"written on the primary, but {replicas} of the {durable.replicas} replicas asked for confirmed it "
            f"within {durable.timeout:g} s"
        )
        self.replicas, self.wanted = replicas, durable.replicas
        self.durable = durable
        self.task_ids: list[str] = []
        self.batch_ids: list[str] = []
        # What the push wrote, as each layer tells it: the PUSH replies (store.scripts), the pushed chunks
        # (batch.push), so that the caller can still answer with the ids and begin the batches it opened.
        self.pushed: list[Any] = []
        self.results: list[Any] = []

    def alone(self, task_id: str, batch_id: str) -> NotReplicated:
        """The same shortfall, told of one task: what an auto-batched request's client is answered."""
        one = NotReplicated(self.replicas, self.durable)
        one.task_ids, one.batch_ids = [task_id], [batch_id]
        return one


def replicated(got: Any, durable: Durable) -> None:
    if int(got) < durable.replicas:
        raise NotReplicated(int(got), durable)
