-- KEYS: state queue retry leases started finished failed finalize bell batches suspended workers worker events totals rate
-- ARGV: job_prefix batch_prefix ttl stamp lease worker_name finalize_lease name results_prefix journal_prefix result_ttl retry_limit resting_period loop_backoff
--- @include "bump"
--- @include "events"
--- @include "open_batch"
--- @include "hold"
--- @include "unlease"
--- @include "batch_stopped"
--- @include "queued_kind"
--- @include "end_task"
--- @include "take_over"
--- @include "rate"
--- @include "task_fields"
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
if redis.call('EXISTS', k.state) == 0 then return {tostring(k.now), S.DELETED, '', '', '', {}, {}, 0} end
local state = redis.call('HGETALL', k.state)
local status = redis.call('HGET', k.state, 'status') or S.CREATED
local active = redis.call('HGET', k.state, 'active_batch') or ''

local function hash_of(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function first_score(key, best)
  local r = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if r[2] and (best == nil or tonumber(r[2]) < best) then return tonumber(r[2]) end
  return best
end

local function reply(tasks, finalize, wake_at)  -- wake_at: when the start budget (rate.lua) allows a start
  progress()
  local wake = first_score(k.finalize, first_score(k.leases, first_score(k.retry, wake_at)))
  local in_flight = redis.call('ZCARD', k.leases) + redis.call('ZCARD', k.finalize)
  return {tostring(k.now), status, active, wake and tostring(wake) or '', finalize, state, tasks, in_flight}
end

local function adopt_requeued(id)
  local jk = k.job_prefix .. id
  local final = redis.call('HGET', jk, 'sq_final')
  redis.call('HSET', jk, 'status', final == 'passed' and 'finished' or 'failed')
  if final ~= 'failed' or redis.call('HEXISTS', jk, 'sq_requeued_as') == 1 then return nil end
  redis.call('HSET', jk, 'exc_info', redis.call('HGET', jk, 'sq_remark') or '')
  local nid = id .. '-r' .. bump(jk, 'sq_requeues')
  local f = redis.call('HMGET', jk, 'description', 'origin')
  local bid, opened = open_or_join(ARGV[A + 1], k.now)
  if opened == 1 then active, status = bid, redis.call('HGET', k.state, 'status') end
  hold(bid)
  redis.call('HSET', k.job_prefix .. nid, unpack(task_copy(jk, {'created_at', k.stamp, 'origin', f[2] or '',
    'status', 'queued', 'sq_batch', bid})))
  if f[1] then redis.call('HSET', k.job_prefix .. nid, 'description', f[1]) end
  count_in(bid, {nid})
  -- RQ's requeue saved the old job with its own serializer (a pickle without -S): its meta is written
  -- again as JSON, saying where the task went, so RQ's readers and rq-dashboard still read it.
  local old = redis.call('HMGET', jk, 'sq_batch', 'sq_remark', 'sq_retries')
  redis.call('HSET', jk, 'sq_requeued_as', nid, 'meta', cjson.encode({serviceq = k.name, batch_id = old[1],
    remark = old[2], total_retry_attempts = tonumber(old[3] or '0') or 0, outcome = 'failed', requeued_as = nid}))
  redis.call('ZREM', k.failed, id)
  return nid
end

if redis.call('EXISTS', k.suspended) == 1 then
  status = S.SUSPENDED
  return reply({}, '')
end
local fin = redis.call('ZRANGEBYSCORE', k.finalize, '-inf', k.now, 'LIMIT', 0, 1)
while fin[1] and string.sub(fin[1], 1, #HOLD_PREFIX) == HOLD_PREFIX do
  local bid = hold_ended(fin[1])
  if bid then return reply({}, bid) end
  fin = redis.call('ZRANGEBYSCORE', k.finalize, '-inf', k.now, 'LIMIT', 0, 1)
end
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
if status == S.PAUSED or status == S.STOPPED then return reply({}, '') end

local want = tonumber(ARGV[A])
local backlog = redis.call('LLEN', k.queue) + redis.call('ZCOUNT', k.retry, '-inf', k.now)
if want > 1 then
  local workers = math.max(1, redis.call('SCARD', k.workers))
  want = math.max(1, math.min(want, math.ceil(backlog / workers)))
end
if backlog > 0 or redis.call('ZCOUNT', k.leases, '-inf', k.now) > 0 then  -- something to start: is it allowed?
  local allowed, next_start = budget(want)
  if allowed == 0 then return reply({}, ended, next_start) end
  want = allowed
end
local cfg = retry_config()
flush()  -- the stopped batches' lost tasks above were unleased: not to be read again below
local picked = {}  -- {id, its job hash (flat) and that as a table, when already read}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.leases, '-inf', k.now, 'LIMIT', 0, want)) do
  local again, bid = take_over(id, cfg)
  if again then picked[#picked + 1] = {id} end
  if bid then ended = bid end
end
flush()  -- a takeover may have scheduled a retry
if #picked < want then
  local due = redis.call('ZRANGEBYSCORE', k.retry, '-inf', k.now, 'LIMIT', 0, want - #picked)
  if #due > 0 then redis.call('ZREM', k.retry, unpack(due)) end
  for _, id in ipairs(due) do picked[#picked + 1] = {id} end
end
while #picked < want do
  local popped = redis.call('LPOP', k.queue, want - #picked)
  if not popped then break end
  for _, id in ipairs(popped) do
    local flat = redis.call('HGETALL', k.job_prefix .. id)
    local h = hash_of(flat)
    local kind = kind_of(h.sq_batch, h.sq_final, h.status, h.data)
    if kind == 'foreign' then refuse_foreign(id) end
    if kind == 'task' then picked[#picked + 1] = {id, flat, h} end
    if kind == 'requeued' then
      local nid = adopt_requeued(id)
      if nid then picked[#picked + 1] = {nid} end
    end
  end
end

-- The claimed task's hash as the worker is to see it: what this claim wrote follows what was read
-- (the worker takes the last value of a field), so the hash is read once per task, not twice.
local function claimed(flat, claim)
  local n = #flat
  flat[n + 1], flat[n + 2], flat[n + 3], flat[n + 4] = 'status', 'started', 'worker_name', k.worker_name
  flat[n + 5], flat[n + 6], flat[n + 7], flat[n + 8] = 'started_at', k.stamp, 'sq_claim', claim
  return flat
end

local tasks = {}
for _, entry in ipairs(picked) do
  local id = entry[1]
  local jk = k.job_prefix .. id
  local flat = entry[2] or redis.call('HGETALL', jk)
  local h = entry[3] or hash_of(flat)
  if #flat == 0 then
    defer('zrem', k.leases, id)  -- deleted by RQ's tools: RECONCILE counts it through its batch
  elseif batch_is_stopped(h.sq_batch) then
    unlease(id, h.sq_claim)
    ended = end_task(id, false, STOPPED .. 'could run', {h.sq_batch, h.sq_final, h.sq_retries}) or ended
  else
    -- The lease is scored anew below (a ZADD of a member that is there moves it): no ZREM first.
    local last = tonumber(h.sq_claim or '') or 0  -- the last claim's token; negative once it was let go
    if last > 0 then defer('zrem', k.started, id .. ':' .. h.sq_claim) end
    -- One field is the token and the count of claims (an older version kept the count in sq_claims): every
    -- field of a hash costs bytes, some 60 a task in a hash table, kept for the task's report.
    local claim = tostring(math.max(counter(h.sq_claims), counter(tostring(math.abs(last)))) + 1)
    redis.call('HSET', jk, 'status', 'started', 'worker_name', k.worker_name, 'started_at', k.stamp,
      'sq_claim', claim)
    if h.sq_claims then redis.call('HDEL', jk, 'sq_claims') end
    if h.sq_started or h.sq_outcome then  -- journaled in the hash by an older version
      redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
    end
    defer('zadd', k.leases, math.ceil(k.now + k.lease), id)  -- whole seconds: see extend_leases
    defer('zadd', k.started, '+inf', id .. ':' .. claim)
    tasks[#tasks + 1] = {id, claim, claimed(flat, claim)}
  end
end
spend(#tasks)
if #tasks > 0 and status == S.PENDING then
  status = S.RUNNING
  redis.call('HSET', k.state, 'status', status)
  if active ~= '' then redis.call('HSET', k.batch_prefix .. active, 'status', status) end
end
return reply(tasks, ended)
