"""Lua scripts: every transition that must be atomic across workers and machines.

All scripts share one calling convention, ``CONTEXT``: the same KEYS (every
key of the service queue a transition may touch) and the same first ARGV
(prefixes, TTL, the caller's worker).  ``LIB`` holds the few steps several
transitions share: counting a task's end in its batch ledger exactly once,
failing a task, and asking whether its batch was stopped.

Each script takes Redis' own clock (``TIME``), so workers whose clocks
disagree still agree on when a retry is due.  Floats are returned as strings
because Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from rq.utils import utcformat

from . import keys as k
from .models import DEFAULT_REPORT_TTL

_scripts: dict[str, Script] = {}
LEASE_SECONDS = 15.0  # how long a claimed task or batch-end job stays a worker's without a sign of life


@dataclass(frozen=True)
class Context:
    """The KEYS and leading ARGV every script gets (see ``HEADER``)."""

    keys: k.Keys
    worker_name: str = ""
    ttl: int = DEFAULT_REPORT_TTL
    lease: float = LEASE_SECONDS
    finalize_lease: float = LEASE_SECONDS  # how long batch-end work (report, callback) may take

    def key_list(self) -> list[str]:
        q = self.keys
        worker = k.worker_key(self.worker_name) if self.worker_name else q.base + "no-worker"
        return [q.state, q.queue, q.retry, q.leases, q.started, q.finished, q.failed, q.finalize, q.bell,
                q.batches, k.RQ_QUEUES, k.SUSPENDED, q.workers, worker]  # fmt: skip

    def arg_list(self) -> list[Any]:
        stamp = utcformat(datetime.now(UTC))  # RQ's date format, for RQ's own fields
        return [k.JOB_PREFIX, self.keys.batch_prefix, self.ttl, stamp, self.lease, self.worker_name,
                self.finalize_lease]  # fmt: skip


def run(conn: Redis | Pipeline, source: str, ctx: Context, args: Sequence[Any] = ()) -> Any:
    """Run a script by SHA (loading it once), on a connection or inside a pipeline."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = Script(conn, HEADER + LIB + source)  # type: ignore[arg-type]
    return script(keys=ctx.key_list(), args=[*ctx.arg_list(), *args], client=conn)  # type: ignore[arg-type]


HEADER = """
-- KEYS[1] state hash   KEYS[2] queue list (RQ)   KEYS[3] retry zset   KEYS[4] leases zset
-- KEYS[5] started registry (RQ)   KEYS[6] finished registry (RQ)   KEYS[7] failed registry (RQ)
-- KEYS[8] finalize zset   KEYS[9] bell list   KEYS[10] batches zset   KEYS[11] rq:queues
-- KEYS[12] rq:suspended   KEYS[13] RQ's worker set of the queue   KEYS[14] the caller's RQ worker hash
-- ARGV[1] job key prefix   ARGV[2] batch key prefix   ARGV[3] report ttl   ARGV[4] RQ date stamp
-- ARGV[5] lease seconds   ARGV[6] worker name ('' when not a worker)   ARGV[7] batch-end work lease
-- ARGV[8..] the script's own
local t = redis.call('TIME')
local k = {state = KEYS[1], queue = KEYS[2], retry = KEYS[3], leases = KEYS[4], started = KEYS[5],
  finished = KEYS[6], failed = KEYS[7], finalize = KEYS[8], bell = KEYS[9], batches = KEYS[10],
  rq_queues = KEYS[11], suspended = KEYS[12], workers = KEYS[13], worker = KEYS[14],
  job_prefix = ARGV[1], batch_prefix = ARGV[2], ttl = tonumber(ARGV[3]), stamp = ARGV[4],
  lease = tonumber(ARGV[5]), worker_name = ARGV[6], finalize_lease = tonumber(ARGV[7]),
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000}
local A = 8
"""

LIB = """
local function ring(n)  -- wake up to n idle workers
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', k.bell, 'x') end
  redis.call('LTRIM', k.bell, 0, 63)
end

-- The active batch, or a new one (id new_bid) when none is active.  A new batch's
-- begin callback is leased work: due at begin_due, run by its pusher or, failing
-- that, by a worker.  Returns bid, opened (0|1).
local function open_or_join(new_bid, begin_due)
  local bid = redis.call('HGET', k.state, 'active_batch')
  if bid then return bid, 0 end
  redis.call('HSET', k.state, 'active_batch', new_bid, 'last_batch', new_bid)
  if redis.call('HGET', k.state, 'status') ~= 'PAUSED' then redis.call('HSET', k.state, 'status', 'PENDING') end
  redis.call('HSET', k.batch_prefix .. new_bid, 'batch_id', new_bid, 'start_time', tostring(k.now),
    'status', 'PENDING', 'submitted', 0, 'passed', 0, 'failed', 0, 'pending', 0)
  redis.call('ZADD', k.batches, k.now, new_bid)
  redis.call('ZADD', k.finalize, begin_due, 'begin:' .. new_bid)
  return new_bid, 1
end

-- Count tasks into a batch: its ledger and its set of open (not yet ended) tasks,
-- which is how a task removed behind rq-serviceq's back is found (see RECONCILE).
local function count_in(bid, ids)
  local bk = k.batch_prefix .. bid
  for i = 1, #ids, 1000 do redis.call('SADD', bk .. ':open', unpack(ids, i, math.min(i + 999, #ids))) end
  redis.call('HINCRBY', bk, 'submitted', #ids)
  redis.call('HINCRBY', bk, 'pending', #ids)
end

-- Count a task's end in its batch ledger, once: sq_final guards against a task
-- settled twice or put back by RQ tools after it had ended.  The step that takes
-- `pending` to 0 and wins HSETNX on end_time ends the batch; returns its id then.
local function count_end(jk, id, which)
  if redis.call('HSETNX', jk, 'sq_final', which) == 0 then return nil end
  local bid = redis.call('HGET', jk, 'sq_batch')
  local bk = k.batch_prefix .. bid
  redis.call('SREM', bk .. ':open', id)
  redis.call('RPUSH', bk .. ':' .. which, id)
  redis.call('HINCRBY', bk, which, 1)
  local pending = redis.call('HINCRBY', bk, 'pending', -1)
  if k.worker_name ~= '' and redis.call('EXISTS', k.worker) == 1 then
    redis.call('HINCRBY', k.worker, which == 'passed' and 'successful_job_count' or 'failed_job_count', 1)
  end
  if pending <= 0 and redis.call('HSETNX', bk, 'end_time', tostring(k.now)) == 1 then
    redis.call('HSET', bk, 'status', 'ENDING')
    if redis.call('HGET', k.state, 'active_batch') == bid then redis.call('HDEL', k.state, 'active_batch') end
    redis.call('ZADD', k.finalize, k.now + k.finalize_lease, bid)
    ring(64)
    return bid
  end
  return nil
end

local function end_task(id, passed, remark)
  local jk = k.job_prefix .. id
  redis.call('HSET', jk, 'status', passed and 'finished' or 'failed', 'ended_at', k.stamp,
    'sq_remark', remark, 'sq_last', tostring(k.now), 'sq_claim', '')
  redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
  if not passed then redis.call('HSET', jk, 'exc_info', remark) end  -- what rq-dashboard shows
  redis.call('ZADD', passed and k.finished or k.failed, k.now + k.ttl, id)
  return count_end(jk, id, passed and 'passed' or 'failed')
end

local function unlease(id, claim)
  redis.call('ZREM', k.leases, id)
  if claim and claim ~= '' then redis.call('ZREM', k.started, id .. ':' .. claim) end
end

local function batch_stopped(id)
  local bid = redis.call('HGET', k.job_prefix .. id, 'sq_batch')
  return bid and redis.call('HGET', k.batch_prefix .. bid, 'stopped') == '1'
end

local STOPPED = 'STOPPED | the service queue was stopped before this task '
local REMOVED = 'NO_RETRY | removed from the queue outside rq-serviceq '
local LOSS_FLOOR = 3  -- a task is failed for killing workers only after this many deaths, whatever retry_limit

local function retry_config()
  local c = redis.call('HMGET', k.state, 'retry_limit', 'resting_period', 'loop_backoff')
  return {limit = tonumber(c[1] or '0'), resting = tonumber(c[2] or '0'), backoff = tonumber(c[3] or '0')}
end

-- Record one attempt's outcome (verdict pass|retry|fail) under claim token `claim`.
-- Returns the result row {id, passed|failed|retry|stale, due, retries} and the batch
-- this ended (or nil).
local function settle_one(id, claim, verdict, remark, cfg)
  local jk = k.job_prefix .. id
  if redis.call('HGET', jk, 'sq_claim') ~= claim then return {id, 'stale', '', ''}, nil end
  unlease(id, claim)
  local retries = tonumber(redis.call('HGET', jk, 'sq_retries') or '0')
  local stopped = batch_stopped(id)
  if verdict == 'retry' and retries < cfg.limit and not stopped then
    retries = retries + 1
    local due = k.now + cfg.resting + (retries - 1) * cfg.backoff
    redis.call('HSET', jk, 'status', 'scheduled', 'sq_retries', retries, 'sq_due', tostring(due),
      'sq_claim', '', 'sq_last', tostring(k.now), 'sq_remark', remark)
    redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
    redis.call('ZADD', k.retry, due, id)
    return {id, 'retry', tostring(due), retries}, nil
  end
  if verdict == 'retry' and retries < cfg.limit then remark = STOPPED .. 'could be retried: ' .. remark end
  return {id, verdict == 'pass' and 'passed' or 'failed', '', retries}, end_task(id, verdict == 'pass', remark)
end

-- A task whose lease ran out (its worker is gone).  Its journal says what happened:
-- an outcome recorded under the current claim is settled as if reported; a task that
-- had started counts a worker death, and fails once it has killed max(retry_limit,
-- LOSS_FLOOR) workers; a task that never started is simply handed out again.
-- Returns again (true: hand it out), ended batch id or nil.
local function take_over(id, cfg)
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'sq_claim', 'sq_started', 'sq_outcome', 'worker_name')
  local claim, started, journal, owner = f[1], f[2], f[3], f[4]
  if journal and claim and string.sub(journal, 1, #claim + 1) == claim .. '\\31' then
    local rest = string.sub(journal, #claim + 2)
    local sep = string.find(rest, '\\31', 1, true)
    if sep then
      local _, bid = settle_one(id, claim, string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1), cfg)
      return false, bid
    end
  end
  if started and started == claim then
    local lost = redis.call('HINCRBY', jk, 'sq_lost', 1)
    if lost >= math.max(cfg.limit, LOSS_FLOOR) then
      unlease(id, claim)
      return false, end_task(id, false, 'NO_RETRY | worker died ' .. lost .. ' times running this task (last: '
        .. (owner or '?') .. ')')
    end
  end
  return true, nil
end
"""

PUSH = """
-- Write a chunk of tasks as RQ job hashes, open or join the active batch and queue
-- them, in one atomic step: a batch can never end between "joined" and "counted",
-- and a crash can never leave a job hash without its place in the queue.
-- ARGV[A] batch id to use if a new batch opens   ARGV[A+1] origin (the RQ queue name)
-- ARGV[A+2..] triples: task id, job data (RQ's serialized call), description
-- Returns {batch_id, opened (0|1), now}
-- The pusher runs the batch-begin callback; should it die first, a worker takes this over.
local bid, opened = open_or_join(ARGV[A], k.now + k.finalize_lease)
local created = tostring(k.now)
local ids = {}
for i = A + 2, #ARGV, 3 do
  redis.call('HSET', k.job_prefix .. ARGV[i], 'created_at', k.stamp, 'enqueued_at', k.stamp, 'data', ARGV[i + 1],
    'origin', ARGV[A + 1], 'description', ARGV[i + 2], 'status', 'queued', 'worker_name', '',
    'sq_batch', bid, 'sq_created', created)
  redis.call('RPUSH', k.queue, ARGV[i])
  ids[#ids + 1] = ARGV[i]
end
count_in(bid, ids)
redis.call('SADD', k.rq_queues, k.queue)
ring(#ids)
return {bid, opened, created}
"""

CLAIM = """
-- Hand a worker up to ARGV[A] tasks: tasks whose worker vanished (lease expired)
-- first, then due retries, then the pending queue.  Popping and registering are
-- one step, so a task is never held by two workers nor dropped in between.  A
-- fair share of the backlog is taken, at least 1.  Tasks of a stopped batch are
-- failed instead of handed out.  A task that had ended and was put back on the
-- queue by RQ's tools (`rq requeue`) becomes a new task of the active batch, as
-- requeue_failed would make it (its old report stays as it was).
-- ARGV[A+1] batch id to use should such a task open a new batch.
-- Returns {now, status, active batch, next wake-up time, batch to finalize,
--          state hash (flat), tasks: {{id, claim, job hash (flat)}, ...}, work in flight}
if redis.call('EXISTS', k.state) == 0 then return {tostring(k.now), 'DELETED', '', '', '', {}, {}, 0} end
local state = redis.call('HGETALL', k.state)
local status = redis.call('HGET', k.state, 'status') or 'CREATED'
local active = redis.call('HGET', k.state, 'active_batch') or ''

local function first_score(key, best)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] and (best == nil or tonumber(r[2]) < best) then return tonumber(r[2]) end
  return best
end

local function reply(tasks, finalize)
  local wake = first_score(k.finalize, first_score(k.leases, first_score(k.retry, nil)))
  local in_flight = redis.call('ZCARD', k.leases) + redis.call('ZCARD', k.finalize)
  return {tostring(k.now), status, active, wake and tostring(wake) or '', finalize, state, tasks, in_flight}
end

local function adopt_requeued(id, final)
  local jk = k.job_prefix .. id
  redis.call('HSET', jk, 'status', final == 'passed' and 'finished' or 'failed')
  if final ~= 'failed' or redis.call('HEXISTS', jk, 'sq_requeued_as') == 1 then return nil end
  redis.call('HSET', jk, 'exc_info', redis.call('HGET', jk, 'sq_remark') or '')
  local nid = id .. '-r' .. redis.call('HINCRBY', jk, 'sq_requeues', 1)
  local f = redis.call('HMGET', jk, 'data', 'description', 'origin')
  local bid, opened = open_or_join(ARGV[A + 1], k.now)
  if opened == 1 then active, status = bid, redis.call('HGET', k.state, 'status') end
  redis.call('HSET', k.job_prefix .. nid, 'created_at', k.stamp, 'enqueued_at', k.stamp, 'data', f[1],
    'origin', f[3], 'description', f[2], 'status', 'queued', 'worker_name', '', 'sq_batch', bid,
    'sq_created', tostring(k.now))
  count_in(bid, {nid})
  redis.call('HSET', jk, 'sq_requeued_as', nid)
  redis.call('ZREM', k.failed, id)
  return nid
end

if redis.call('EXISTS', k.suspended) == 1 then
  status = 'SUSPENDED'
  return reply({}, '')
end
local fin = redis.call('ZRANGEBYSCORE', k.finalize, '-inf', k.now, 'LIMIT', 0, 1)
if fin[1] then
  redis.call('ZADD', k.finalize, k.now + k.finalize_lease, fin[1])
  return reply({}, fin[1])
end
-- Lost tasks of a stopped batch are failed whatever the status: nobody will run them.
local ended = ''
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.leases, '-inf', k.now, 'LIMIT', 0, 100)) do
  if batch_stopped(id) then
    unlease(id, redis.call('HGET', k.job_prefix .. id, 'sq_claim'))
    ended = end_task(id, false, STOPPED .. 'could finish (its worker was lost)') or ended
  end
end
if ended ~= '' then return reply({}, ended) end
if status == 'PAUSED' or status == 'STOPPED' then return reply({}, '') end

local want = tonumber(ARGV[A])
if want > 1 then
  local workers = math.max(1, redis.call('SCARD', k.workers))
  local backlog = redis.call('LLEN', k.queue) + redis.call('ZCOUNT', k.retry, '-inf', k.now)
  want = math.max(1, math.min(want, math.ceil(backlog / workers)))
end
local cfg = retry_config()
local ids = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.leases, '-inf', k.now, 'LIMIT', 0, want)) do
  local again, bid = take_over(id, cfg)
  if again then ids[#ids + 1] = id end
  if bid then ended = bid end
end
if #ids < want then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.retry, '-inf', k.now, 'LIMIT', 0, want - #ids)) do
    redis.call('ZREM', k.retry, id)
    ids[#ids + 1] = id
  end
end
while #ids < want do
  local id = redis.call('LPOP', k.queue)
  if not id then break end
  local final = redis.call('HGET', k.job_prefix .. id, 'sq_final')
  if final then id = adopt_requeued(id, final) end
  if id then ids[#ids + 1] = id end
end

local tasks = {}
for _, id in ipairs(ids) do
  local jk = k.job_prefix .. id
  if redis.call('EXISTS', jk) == 0 then
    redis.call('ZREM', k.leases, id)  -- deleted by RQ's tools: RECONCILE counts it through its batch
  elseif batch_stopped(id) then
    unlease(id, redis.call('HGET', jk, 'sq_claim'))
    ended = end_task(id, false, STOPPED .. 'could run') or ended
  else
    unlease(id, redis.call('HGET', jk, 'sq_claim'))
    local claim = tostring(redis.call('HINCRBY', jk, 'sq_claims', 1))
    redis.call('HSET', jk, 'status', 'started', 'worker_name', k.worker_name, 'started_at', k.stamp, 'sq_claim', claim)
    redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
    redis.call('ZADD', k.leases, k.now + k.lease, id)
    redis.call('ZADD', k.started, '+inf', id .. ':' .. claim)
    tasks[#tasks + 1] = {id, claim, redis.call('HGETALL', jk)}
  end
end
if #tasks > 0 and status == 'PENDING' then
  status = 'RUNNING'
  redis.call('HSET', k.state, 'status', status)
  if active ~= '' then redis.call('HSET', k.batch_prefix .. active, 'status', status) end
end
return reply(tasks, ended)
"""

SETTLE = """
-- Record the outcome of attempts.  A passed or finally failed task moves to the
-- finished/failed registry and its batch ledger in one step; a retryable failure
-- is scheduled on the retry zset (unless its batch was stopped: then it fails).
-- The claim token fences out a worker that lost its lease: its late outcome is
-- ignored, so no task is counted twice.
-- ARGV[A..] groups of 4: task id, claim token, verdict (pass|retry|fail), remark
-- Returns {now, {{id, result, due, retries}, ...}, {ended batch ids}}
local cfg = retry_config()
local results, ended = {}, {}
local rang = false
for i = A, #ARGV, 4 do
  local row, bid = settle_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], cfg)
  results[#results + 1] = row
  if bid then ended[#ended + 1] = bid end
  if row[2] == 'retry' and not rang then ring(1) rang = true end
end
return {tostring(k.now), results, ended}
"""

RELEASE = """
-- Give claimed tasks that were never started back to the front of the queue
-- (a worker asked to stop or pause between tasks of a claimed group).  Tasks of
-- a stopped batch are failed instead.
-- ARGV[A..] pairs: task id, claim token.   Returns {ended batch ids}
local ended = {}
for i = #ARGV - 1, A, -2 do
  local id, claim = ARGV[i], ARGV[i + 1]
  local jk = k.job_prefix .. id
  if redis.call('HGET', jk, 'sq_claim') == claim then
    unlease(id, claim)
    if batch_stopped(id) then
      local bid = end_task(id, false, STOPPED .. 'could run')
      if bid then ended[#ended + 1] = bid end
    else
      redis.call('HSET', jk, 'sq_claim', '', 'status', 'queued')
      redis.call('LPUSH', k.queue, id)
    end
  end
end
ring(#ARGV - A)
return ended
"""

EXTEND_LEASES = """
-- Keep a live worker's claims, and the batch work it is doing, from being taken
-- as lost.  Only entries still leased (XX) are touched, so nothing already
-- settled or finished is resurrected.
-- ARGV[A] how many task ids follow   ARGV[A+1..] task ids, then finalize-zset members
local n = tonumber(ARGV[A])
for i = A + 1, #ARGV do
  redis.call('ZADD', i <= A + n and k.leases or k.finalize, 'XX', k.now + k.lease, ARGV[i])
end
return #ARGV - A
"""

SET_STATUS = """
-- Pause or resume: ARGV[A] 'PAUSED' or 'RESUME'.  Pausing bumps pause_gen, which
-- workers compare with the generation their claim saw before starting a task.
-- Returns {status, pause_gen}
local status = redis.call('HGET', k.state, 'status') or 'CREATED'
if ARGV[A] == 'PAUSED' then
  if status ~= 'PAUSED' then redis.call('HSET', k.state, 'status', 'PAUSED', 'paused_from', status) end
  redis.call('HINCRBY', k.state, 'pause_gen', 1)
elseif status == 'PAUSED' then
  local active = redis.call('HGET', k.state, 'active_batch')
  local last = redis.call('HGET', k.state, 'last_batch')
  local back = active and 'RUNNING' or (last and 'FINISHED' or 'CREATED')
  redis.call('HSET', k.state, 'status', back)
  ring(64)
end
return {redis.call('HGET', k.state, 'status'), redis.call('HGET', k.state, 'pause_gen') or '0'}
"""

STOP = """
-- Stop the active batch: from now on no task of it starts and none is retried; the
-- service queue has no active batch, so the next push opens a new one.  The tasks
-- themselves are failed by STOP_SLICE, a bounded slice at a time, so that stopping
-- a million-task batch never blocks Redis.  Returns {batch id or '', pause_gen}
local bid = redis.call('HGET', k.state, 'active_batch')
redis.call('HINCRBY', k.state, 'pause_gen', 1)
redis.call('HSET', k.state, 'status', 'STOPPED')
if bid then
  redis.call('HSET', k.batch_prefix .. bid, 'stopped', '1', 'final_status', 'STOPPED')
  redis.call('HDEL', k.state, 'active_batch')
end
ring(64)
return {bid or '', redis.call('HGET', k.state, 'pause_gen')}
"""

STOP_SLICE = """
-- Fail up to ARGV[A+2] tasks of stopped batch ARGV[A] that are not running: first
-- from the queue's head (a stopped batch's tasks come before any newer batch's),
-- then through the batch's open tasks (waiting retries, tasks whose worker was
-- lost, tasks removed by RQ's tools).  Running tasks finish and are counted.
-- ARGV[A+1] cursor: 'q' to start, then what the last call returned.
-- Returns {next cursor ('done' after a whole pass), ended batch id or ''}
local bid, cursor, n = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local bk = k.batch_prefix .. bid
local ended = ''
local function fail(id, why) ended = end_task(id, false, STOPPED .. why) or ended end

if cursor == 'q' then
  local popped = redis.call('LPOP', k.queue, n) or {}
  for i, id in ipairs(popped) do
    if not batch_stopped(id) then  -- a newer batch begins here: put it back as it was
      for j = #popped, i, -1 do redis.call('LPUSH', k.queue, popped[j]) end
      return {'0', ended}
    end
    fail(id, 'could run')
  end
  return {#popped < n and '0' or 'q', ended}
end

local scan = redis.call('SSCAN', bk .. ':open', cursor, 'COUNT', n)
for _, id in ipairs(scan[2]) do
  local lease = redis.call('ZSCORE', k.leases, id)
  if redis.call('ZREM', k.retry, id) == 1 then
    fail(id, 'could be retried')
  elseif lease and tonumber(lease) <= k.now then
    unlease(id, redis.call('HGET', k.job_prefix .. id, 'sq_claim'))
    fail(id, 'could finish (its worker was lost)')
  elseif not lease then
    if redis.call('EXISTS', k.job_prefix .. id) == 0 then redis.call('HSET', k.job_prefix .. id, 'sq_batch', bid) end
    fail(id, 'could run')
  end
end
if scan[1] ~= '0' then return {scan[1], ended} end
if tonumber(redis.call('HGET', bk, 'pending')) <= 0 and redis.call('HSETNX', bk, 'end_time', tostring(k.now)) == 1 then
  redis.call('HSET', bk, 'status', 'ENDING')  -- nothing was left to fail and nothing runs: end it here
  redis.call('ZADD', k.finalize, k.now + k.finalize_lease, bid)
  ended = bid
end
return {'done', ended}
"""

RECONCILE = """
-- Find tasks of batch ARGV[A] that left the service queue behind rq-serviceq's back,
-- a slice of its open tasks per call: a job deleted (`rq empty`, job.delete()) or
-- canceled (job.cancel()) is counted failed with a remark that says so; a job a plain
-- `rq worker` took (and failed or finished with the placeholder function) goes back
-- to the head of the queue.  Tasks queued, running under a lease or waiting to retry
-- are as they should be.  One pass at a time per service queue, at most one every 2 s.
-- ARGV[A+1] cursor ('0' starts a pass)   ARGV[A+2] slice size
-- Returns {next cursor ('0' when the pass is over, or '' when another pass is under way
--          or ran lately), failed, given back, ended batch id or ''}
local bid, cursor, n = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local lock = k.batch_prefix .. bid .. ':audit'
if cursor == '0' then
  if not redis.call('SET', lock, k.worker_name, 'NX', 'PX', 2000) then return {'', 0, 0, ''} end
elseif redis.call('GET', lock) ~= k.worker_name then
  return {'', 0, 0, ''}
else
  redis.call('PEXPIRE', lock, 2000)
end
local open = k.batch_prefix .. bid .. ':open'
local scan = redis.call('SSCAN', open, cursor, 'COUNT', n)
local failed, back, ended = 0, 0, ''
local function fail(id, why)
  failed = failed + 1
  ended = end_task(id, false, REMOVED .. why) or ended
end
for _, id in ipairs(scan[2]) do
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'status', 'sq_final')
  local status = f[1]
  if f[2] then
    redis.call('SREM', open, id)
  elseif redis.call('ZSCORE', k.leases, id) or redis.call('ZSCORE', k.retry, id) then
    -- running under a lease, or waiting to retry: as it should be
  elseif not status then
    redis.call('HSET', jk, 'sq_batch', bid)
    fail(id, '(its job was deleted, e.g. by `rq empty` or job.delete())')
  elseif status == 'canceled' or status == 'stopped' then
    fail(id, '(its job was ' .. status .. ', e.g. by job.cancel())')
  elseif status == 'failed' or status == 'finished' then  -- a plain `rq worker` ran the placeholder
    redis.call('ZREM', k.failed, id)
    redis.call('ZREM', k.finished, id)
    redis.call('HSET', jk, 'status', 'queued', 'sq_claim', '')
    redis.call('LPUSH', k.queue, id)
    back = back + 1
  end
end
if back > 0 then ring(back) end
return {scan[1], failed, back, ended}
"""

FINISH = """
-- Mark a batch's end work (report, batch-end callback) done.  The service queue
-- takes the batch's final status only if no newer batch has opened meanwhile.
-- ARGV[A] batch id   ARGV[A+1] final status (FINISHED|STOPPED), or 'BEGUN' for the batch-begin work
-- Returns 1 when this call finished the batch, 0 when it had been finished already.
local bk = k.batch_prefix .. ARGV[A]
if ARGV[A + 1] == 'BEGUN' then return redis.call('ZREM', k.finalize, 'begin:' .. ARGV[A]) end
redis.call('ZREM', k.finalize, ARGV[A])
if redis.call('HGET', bk, 'finalized') then return 0 end
redis.call('HSET', bk, 'finalized', tostring(k.now), 'status', ARGV[A + 1])
if not redis.call('HGET', k.state, 'active_batch') and redis.call('HGET', k.state, 'status') ~= 'PAUSED' then
  redis.call('HSET', k.state, 'status', ARGV[A + 1])
end
return 1
"""

RECLAIM = """
-- A worker is known to be dead (its supervisor saw it exit): make the tasks it
-- held claimable now instead of when their leases run out, and drop it from RQ's
-- worker registry.   The context's worker is the dead one.   ARGV[A] RQ's set of all workers.
-- Returns how many tasks it held.
local n = 0
for _, id in ipairs(redis.call('ZRANGE', k.leases, 0, -1)) do
  if redis.call('HGET', k.job_prefix .. id, 'worker_name') == k.worker_name then
    redis.call('ZADD', k.leases, k.now, id)
    n = n + 1
  end
end
redis.call('SREM', k.workers, k.worker)
redis.call('SREM', ARGV[A], k.worker)
redis.call('DEL', k.worker)
ring(math.max(n, 1))
return n
"""
