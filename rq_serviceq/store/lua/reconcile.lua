-- KEYS: state queue retry leases finished failed finalize bell worker events totals intermediate
-- ARGV: job_prefix batch_prefix ttl stamp worker_name finalize_lease name results_prefix result_ttl
--- @include "events"
--- @include "ring"
--- @include "end_task"
-- Find tasks of batch ARGV[A] that left the service queue behind rq-serviceq's back,
-- a slice of its open tasks per call: a job deleted (`rq empty`, job.delete()) or
-- canceled (job.cancel()), or whose id left the queue list while it waited
-- (`Queue.remove(job)`), is counted failed with a remark that says so; a job a plain
-- `rq worker` took (and failed or finished with the placeholder function, or left in
-- RQ's intermediate queue as it died) goes back to the head of the queue.  Tasks
-- queued, running under a lease or waiting to retry are as they should be.  One pass
-- at a time per service queue, at most one every 2 s, or every N / 2,500 s for a batch of N
-- open tasks: a pass looks at every one (some 6 us of Redis each), so passes at a fixed pace
-- would cost Redis in proportion to the batch (50,000 tasks waiting to retry took 6% of a core).
-- ARGV[A+1] cursor ('0' starts a pass)   ARGV[A+2] slice size
-- Returns {next cursor ('0' when the pass is over, or '' when another pass is under way
--          or ran lately), failed, given back, ended batch id or ''}
local REMOVED = 'NO_RETRY | removed from the queue outside rq-serviceq '
local PASS_EVERY_MS, PASS_MS_PER_TASK = 2000, 0.4  -- 2 s, or 1 s per 2,500 open tasks
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
local intermediate = k.intermediate  -- RQ's: a plain `rq worker` moves an id here as it takes it
local function give_back(id)
  local last = tonumber(redis.call('HGET', k.job_prefix .. id, 'sq_claim') or '') or 0
  redis.call('HSET', k.job_prefix .. id, 'status', 'queued', 'sq_claim', '-' .. math.abs(last))  -- let go, count kept
  redis.call('LPUSH', k.queue, id)
  back = back + 1
end
-- A task that says queued (or waiting to retry) but is in no lease or retry set: in the queue's
-- list, or not?  LPOS would cost O(queue length) per task, so the list is only trusted to be
-- empty: while it holds anything, a queued task is taken to be in it (the audit runs when a
-- worker is idle, that is, when the list has drained, and finds the task then).  With the list
-- empty, a task RQ's intermediate queue holds was taken by a plain `rq worker` that died before
-- it ran it: it goes back for a ServiceQWorker; any other was removed (`Queue.remove(job)`).
local function out_of_place(id, status)
  if status == 'queued' and redis.call('LLEN', k.queue) > 0 then return end
  if redis.call('LLEN', intermediate) > 0 and redis.call('LREM', intermediate, 1, id) == 1 then
    give_back(id)
  else
    fail(id, status == 'queued' and '(its id left the queue while it waited, e.g. by Queue.remove(job))'
      or '(its id left the retry set while it waited)')
  end
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
  elseif status == 'queued' or status == 'scheduled' then
    out_of_place(id, status)
  elseif status == 'canceled' or status == 'stopped' then
    fail(id, '(its job was ' .. status .. ', e.g. by job.cancel())')
  elseif status == 'failed' or status == 'finished' then  -- a plain `rq worker` ran the placeholder
    redis.call('ZREM', k.failed, id)
    redis.call('ZREM', k.finished, id)
    give_back(id)
  end
end
if back > 0 then ring(back) end
if scan[1] == '0' then  -- the pass is over: the next one waits in proportion to what this one read
  redis.call('PEXPIRE', lock, math.max(PASS_EVERY_MS, math.floor(redis.call('SCARD', open) * PASS_MS_PER_TASK)))
end
progress()
return {scan[1], failed, back, ended}
