--- @include "later"
--- @include "record_result"
--- @include "count_end"

-- A task's last outcome (passed, or failed for good): RQ's fields and registry, then its batch's ledger.
local function retries_of(raw)  -- a hash damaged by hand counts as no retry rather than failing the step
  return tonumber(raw or '0') or 0
end

-- What a passed task no longer needs once its report can be built: its claim, its journal, the RQ
-- fields of its run, and what a retry before it wrote for RQ's readers (docs/rq.md: a passed task's
-- hash is its report entry, and ServiceQJob answers RQ's reads from it).
local PASSED_DROPS = {'sq_claim', 'sq_claims', 'sq_started', 'sq_outcome', 'worker_name', 'started_at', 'meta',
  'sq_last', 'sq_due', 'exc_info'}

-- `f` (optional): the task's {sq_batch, sq_final, sq_retries} as the caller read them in this step.
local function end_task(id, passed, remark, f)
  local jk = k.job_prefix .. id
  f = f or redis.call('HMGET', jk, 'sq_batch', 'sq_final', 'sq_retries')
  if f[2] then return nil end  -- ended already: settled twice, or put back by RQ's tools after it ended
  local bid, which = f[1], passed and 'passed' or 'failed'
  if passed then
    redis.call('HDEL', jk, unpack(PASSED_DROPS))  -- first: the hash never holds both sets of fields
    redis.call('HSET', jk, 'status', 'finished', 'ended_at', k.stamp, 'sq_remark', remark, 'sq_final', which)
  else
    record_result(id, which, remark, retries_of(f[3]), bid)
    redis.call('HSET', jk, 'status', 'failed', 'ended_at', k.stamp, 'sq_remark', remark, 'sq_final', which,
      'sq_claim', '', 'exc_info', remark, 'sq_last', tostring(k.now))  -- exc_info: what rq-dashboard shows;
      -- sq_last: its time in the report even after RQ's requeue, which clears ended_at
  end
  defer('zadd', passed and k.finished or k.failed, math.ceil(k.now + k.ttl), id)  -- whole seconds, as RQ
  if not bid then return nil end  -- no batch to count it in (a hash damaged by hand)
  return count_end(bid, id, which)
end
