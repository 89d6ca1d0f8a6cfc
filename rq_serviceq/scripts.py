"""Lua scripts: every transition that must be atomic across workers and machines.

Each script takes Redis' own clock (``TIME``) for due times and timestamps, so
workers whose clocks disagree still agree on when a retry is due.  Floats are
returned as strings because Redis truncates Lua numbers to integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

_scripts: dict[str, Script] = {}


def run(conn: Redis | Pipeline, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run a script by SHA (loading it once), on a connection or inside a pipeline."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = Script(conn, source)  # type: ignore[arg-type]
    return script(keys=keys, args=args, client=conn)  # type: ignore[arg-type]


PUSH = """
-- Open or join the active batch and queue a chunk of tasks whose job hashes the
-- same MULTI has just written.  Opening and joining happen in the same step as
-- counting, so a batch can never end between "joined" and "counted".
-- KEYS[1] state hash    KEYS[2] queue list    KEYS[3] batches zset
-- KEYS[4] bell list     KEYS[5] rq:queues set
-- ARGV[1] batch id to use if a new batch opens   ARGV[2] batch key prefix
-- ARGV[3] job key prefix                         ARGV[4..] task ids
-- Returns {batch_id, opened (0|1), now}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bid = redis.call('HGET', KEYS[1], 'active_batch')
local opened = 0
if not bid then
  bid = ARGV[1]
  opened = 1
  redis.call('HSET', KEYS[1], 'active_batch', bid, 'last_batch', bid, 'status', 'PENDING')
  redis.call('HSET', ARGV[2] .. bid, 'batch_id', bid, 'start_time', tostring(now), 'status', 'PENDING',
    'submitted', 0, 'passed', 0, 'failed', 0, 'pending', 0)
  redis.call('ZADD', KEYS[3], now, bid)
end
local n = #ARGV - 3
for i = 4, #ARGV do
  redis.call('HSET', ARGV[3] .. ARGV[i], 'sq_batch', bid, 'sq_created', tostring(now))
  redis.call('RPUSH', KEYS[2], ARGV[i])
end
redis.call('HINCRBY', ARGV[2] .. bid, 'submitted', n)
redis.call('HINCRBY', ARGV[2] .. bid, 'pending', n)
redis.call('SADD', KEYS[5], KEYS[2])
for _ = 1, math.min(n, 64) do redis.call('RPUSH', KEYS[4], 'push') end  -- wake up to n idle workers
redis.call('LTRIM', KEYS[4], 0, 63)
return {bid, opened, tostring(now)}
"""

CLAIM = """
-- Hand a worker up to ARGV[2] tasks: tasks whose worker vanished (lease expired)
-- first, then due retries, then the pending queue.  Popping and registering are
-- one step, so a task is never held by two workers nor dropped in between.
-- KEYS[1] state hash   KEYS[2] queue list   KEYS[3] retry zset   KEYS[4] leases zset
-- KEYS[5] started registry (rq:wip)   KEYS[6] rq:suspended   KEYS[7] finalize zset
-- KEYS[8] RQ's set of workers on the queue
-- ARGV[1] worker name   ARGV[2] max tasks (a fair share of the backlog is taken, at least 1)
-- ARGV[3] lease seconds
-- ARGV[4] job key prefix   ARGV[5] batch key prefix   ARGV[6] started_at (RQ date string)
-- Returns {now, status, active batch, next wake-up time, batch to finalize,
--          state hash (flat), tasks: {{id, claim, job hash (flat)}, ...}}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[3])
local state = redis.call('HGETALL', KEYS[1])
local status = redis.call('HGET', KEYS[1], 'status') or 'CREATED'
local active = redis.call('HGET', KEYS[1], 'active_batch') or ''

local function first_score(key, best)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] and (best == nil or tonumber(r[2]) < best) then return tonumber(r[2]) end
  return best
end

local function reply(tasks, finalize)
  local wake = first_score(KEYS[7], first_score(KEYS[4], first_score(KEYS[3], nil)))
  return {tostring(now), status, active, wake and tostring(wake) or '', finalize, state, tasks}
end

if redis.call('EXISTS', KEYS[6]) == 1 then
  status = 'SUSPENDED'
  return reply({}, '')
end
local fin = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, 1)
if fin[1] then
  redis.call('ZADD', KEYS[7], now + lease, fin[1])
  return reply({}, fin[1])
end
if status == 'PAUSED' or status == 'STOPPED' then
  return reply({}, '')
end

local want = tonumber(ARGV[2])
if want > 1 then
  local workers = math.max(1, redis.call('SCARD', KEYS[8]))
  local backlog = redis.call('LLEN', KEYS[2]) + redis.call('ZCOUNT', KEYS[3], '-inf', now)
  want = math.max(1, math.min(want, math.ceil(backlog / workers)))
end
local ids = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, want)) do
  ids[#ids + 1] = id
  redis.call('HINCRBY', ARGV[4] .. id, 'sq_lost', 1)
end
if #ids < want then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, want - #ids)) do
    redis.call('ZREM', KEYS[3], id)
    ids[#ids + 1] = id
  end
end
while #ids < want do
  local id = redis.call('LPOP', KEYS[2])
  if not id then break end
  ids[#ids + 1] = id
end

local tasks = {}
for _, id in ipairs(ids) do
  local jk = ARGV[4] .. id
  if redis.call('EXISTS', jk) == 0 then
    redis.call('ZREM', KEYS[4], id)
  else
    local old = redis.call('HGET', jk, 'sq_claim')
    if old and old ~= '' then redis.call('ZREM', KEYS[5], id .. ':' .. old) end
    local claim = tostring(redis.call('HINCRBY', jk, 'sq_claims', 1))
    redis.call('HSET', jk, 'status', 'started', 'worker_name', ARGV[1], 'started_at', ARGV[6], 'sq_claim', claim)
    redis.call('ZADD', KEYS[4], now + lease, id)
    redis.call('ZADD', KEYS[5], '+inf', id .. ':' .. claim)
    tasks[#tasks + 1] = {id, claim, redis.call('HGETALL', jk)}
  end
end
if #tasks > 0 and status == 'PENDING' then
  status = 'RUNNING'
  redis.call('HSET', KEYS[1], 'status', status)
  if active ~= '' then redis.call('HSET', ARGV[5] .. active, 'status', status) end
end
return reply(tasks, '')
"""

SETTLE = """
-- Record the outcome of attempts.  A passed or finally failed task moves to the
-- finished/failed registry and its batch ledger in one step; a retryable failure
-- is scheduled on the retry zset.  The claim token fences out a worker that lost
-- its lease: its late outcome is ignored, so no task is counted twice.  The batch
-- ends exactly once: only the step that takes `pending` to 0 and wins HSETNX on
-- end_time ends it, and queues its batch-end work on the finalize zset.
-- KEYS[1] state hash   KEYS[2] retry zset   KEYS[3] leases zset   KEYS[4] started registry
-- KEYS[5] finished registry   KEYS[6] failed registry   KEYS[7] bell list
-- KEYS[8] worker hash   KEYS[9] finalize zset
-- ARGV[1] job key prefix   ARGV[2] batch key prefix   ARGV[3] registry ttl seconds
-- ARGV[4] ended_at (RQ date string)   ARGV[5] lease seconds
-- ARGV[6..] groups of 4: task id, claim token, verdict (pass|retry|fail), remark
-- Returns {now, {{id, result, due, retries}, ...}, {ended batch ids}}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(redis.call('HGET', KEYS[1], 'retry_limit') or '0')
local resting = tonumber(redis.call('HGET', KEYS[1], 'resting_period') or '0')
local backoff = tonumber(redis.call('HGET', KEYS[1], 'loop_backoff') or '0')
local ttl = tonumber(ARGV[3])
local worker_alive = redis.call('EXISTS', KEYS[8]) == 1
local results, ended = {}, {}
local ring = false

-- Count a task's end in its batch ledger, once: sq_final guards against a task
-- that RQ tools (rq requeue, the dashboard) put back after it had ended.
local function count_end(jk, id, which, passed)
  if redis.call('HSETNX', jk, 'sq_final', which) == 0 then return end
  local bid = redis.call('HGET', jk, 'sq_batch')
  local bk = ARGV[2] .. bid
  redis.call('RPUSH', bk .. ':' .. which, id)
  redis.call('HINCRBY', bk, which, 1)
  local pending = redis.call('HINCRBY', bk, 'pending', -1)
  if worker_alive then
    redis.call('HINCRBY', KEYS[8], passed and 'successful_job_count' or 'failed_job_count', 1)
  end
  if pending <= 0 and redis.call('HSETNX', bk, 'end_time', tostring(now)) == 1 then
    redis.call('HSET', bk, 'status', 'ENDING')
    if redis.call('HGET', KEYS[1], 'active_batch') == bid then
      redis.call('HDEL', KEYS[1], 'active_batch')
    end
    redis.call('ZADD', KEYS[9], now + tonumber(ARGV[5]), bid)
    ended[#ended + 1] = bid
    ring = true
  end
end

for i = 6, #ARGV, 4 do
  local id, claim, verdict, remark = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local jk = ARGV[1] .. id
  if redis.call('HGET', jk, 'sq_claim') ~= claim then
    results[#results + 1] = {id, 'stale', '', ''}
  else
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id .. ':' .. claim)
    local retries = tonumber(redis.call('HGET', jk, 'sq_retries') or '0')
    redis.call('HSET', jk, 'sq_claim', '', 'sq_last', tostring(now), 'sq_remark', remark)
    if verdict == 'retry' and retries < limit then
      retries = retries + 1
      local due = now + resting + (retries - 1) * backoff
      redis.call('HSET', jk, 'status', 'scheduled', 'sq_retries', retries, 'sq_due', tostring(due))
      redis.call('ZADD', KEYS[2], due, id)
      results[#results + 1] = {id, 'retry', tostring(due), retries}
      ring = true
    else
      local passed = verdict == 'pass'
      local which = passed and 'passed' or 'failed'
      redis.call('HSET', jk, 'status', passed and 'finished' or 'failed', 'ended_at', ARGV[4])
      if not passed then redis.call('HSET', jk, 'exc_info', remark) end  -- what rq-dashboard shows
      redis.call('ZADD', passed and KEYS[5] or KEYS[6], now + ttl, id)
      count_end(jk, id, which, passed)
      results[#results + 1] = {id, which, '', retries}
    end
  end
end
if ring then
  redis.call('RPUSH', KEYS[7], 'settle')
  redis.call('LTRIM', KEYS[7], 0, 63)
end
return {tostring(now), results, ended}
"""

FINISH = """
-- Mark a batch's end work (report, batch-end callback) done.  The service queue
-- becomes FINISHED only if no newer batch has opened meanwhile.
-- KEYS[1] state hash   KEYS[2] finalize zset   KEYS[3] batch hash
-- ARGV[1] batch id   ARGV[2] final status (FINISHED|STOPPED)
-- Returns 1 when this call finished the batch, 0 when it had been finished already.
if redis.call('HGET', KEYS[3], 'finalized') then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local t = redis.call('TIME')
redis.call('HSET', KEYS[3], 'finalized', tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000), 'status', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if not redis.call('HGET', KEYS[1], 'active_batch') then
  redis.call('HSET', KEYS[1], 'status', ARGV[2])
end
return 1
"""

RELEASE = """
-- Give claimed tasks that were never started back to the front of the queue
-- (a worker asked to stop between tasks of a claimed group).
-- KEYS[1] queue list   KEYS[2] leases zset   KEYS[3] started registry
-- ARGV[1] job key prefix   ARGV[2..] pairs: task id, claim token
for i = #ARGV - 1, 2, -2 do
  local id, claim = ARGV[i], ARGV[i + 1]
  local jk = ARGV[1] .. id
  if redis.call('HGET', jk, 'sq_claim') == claim then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id .. ':' .. claim)
    redis.call('HSET', jk, 'sq_claim', '', 'status', 'queued')
    redis.call('LPUSH', KEYS[1], id)
  end
end
return 1
"""

EXTEND_LEASES = """
-- Keep a live worker's claims from being taken as lost.  Only ids still leased
-- (XX) are touched, so a task already settled is not resurrected.
-- KEYS[1] leases zset   ARGV[1] lease seconds   ARGV[2..] task ids
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i])
end
return #ARGV - 1
"""
