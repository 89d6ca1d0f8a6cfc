--- @include "record_result"
--- @include "count_end"

-- A task's last outcome (passed, or failed for good): RQ's fields and registry, then its batch's ledger.
local function retries_of(jk)  -- a hash damaged by hand counts as no retry rather than failing the step
  return tonumber(redis.call('HGET', jk, 'sq_retries') or '0') or 0
end

local function end_task(id, passed, remark)
  local jk = k.job_prefix .. id
  record_result(id, passed and 'passed' or 'failed', remark, retries_of(jk))
  redis.call('HSET', jk, 'status', passed and 'finished' or 'failed', 'ended_at', k.stamp,
    'sq_remark', remark, 'sq_last', tostring(k.now), 'sq_claim', '')
  redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
  if not passed then redis.call('HSET', jk, 'exc_info', remark) end  -- what rq-dashboard shows
  redis.call('ZADD', passed and k.finished or k.failed, k.now + k.ttl, id)
  return count_end(jk, id, passed and 'passed' or 'failed')
end
