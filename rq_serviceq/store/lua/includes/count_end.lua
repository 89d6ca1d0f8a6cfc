--- @include "events"
--- @include "end_batch"

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
  touch(bid, 0)
  tally(which, 1)
  if k.worker_name ~= '' and redis.call('EXISTS', k.worker) == 1 then
    redis.call('HINCRBY', k.worker, which == 'passed' and 'successful_job_count' or 'failed_job_count', 1)
  end
  if pending <= 0 and tonumber(redis.call('HGET', bk, 'held_until') or '0') <= k.now then return end_batch(bid) end
  return nil
end
