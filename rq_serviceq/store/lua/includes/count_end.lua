--- @include "later"
--- @include "events"
--- @include "end_batch"

-- Count a task's end in its batch ledger, once: sq_final (set by the caller, end_task, in the same
-- step as it checks it is unset) guards against a task settled twice or put back by RQ's tools after
-- it had ended.  A batch's pending count is read once per script and kept here; the ledger's
-- counters, lists and open set are written at flush().  The step that takes `pending` to 0 and wins
-- HSETNX on end_time ends the batch; returns its id then.
local pending_of = {}  -- batch id -> its pending count, as this script has changed it
local worker_alive = nil  -- does RQ's worker hash exist (counters are not written to a dead worker's)

local function count_end(bid, id, which)
  local bk = k.batch_prefix .. bid
  if pending_of[bid] == nil then pending_of[bid] = tonumber(redis.call('HGET', bk, 'pending') or '0') or 0 end
  pending_of[bid] = pending_of[bid] - 1
  defer('srem', bk .. ':open', id)
  defer('rpush', bk .. ':' .. which, id)
  later_hincr(bk, which, 1)
  later_hincr(bk, 'pending', -1)
  touch(bid, 0)
  tally(which, 1)
  if k.worker_name ~= '' then
    if worker_alive == nil then worker_alive = redis.call('EXISTS', k.worker) == 1 end
    if worker_alive then
      later_hincr(k.worker, which == 'passed' and 'successful_job_count' or 'failed_job_count', 1)
    end
  end
  if pending_of[bid] <= 0 and tonumber(redis.call('HGET', bk, 'held_until') or '0') <= k.now then
    flush()  -- the ledger as the batch ends: its report reads it
    return end_batch(bid)
  end
  return nil
end
