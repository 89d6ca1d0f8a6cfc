"""RQ's own tools on rq-serviceq's queues: rq info, rq requeue, rq empty, RQ's readers, rq-dashboard."""
