"""Who works a service queue (tag ``read``): ``ServiceQ.roster``, its workers and its supervisors' shares."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rq_serviceq.http.routes.common import ERRORS, Name, checked, service, with_queue
from rq_serviceq.models import Roster
from rq_serviceq.serviceq import ServiceQ

router = APIRouter(responses=ERRORS)


@router.get("/serviceqs/{name}/workers", tags=["read"])
async def list_workers(name: Name, request: Request) -> Roster:
    """Who works the service queue: each worker (machine, pid, state, current task, tasks done, last seen)
    and each supervisor's share of worker_count."""
    name = checked(name)
    svc = service(request)
    found: Roster = await svc.run(with_queue, svc, name, ServiceQ.roster)
    return found
