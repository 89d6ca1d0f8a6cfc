--- @include "end_batch"

-- Tasks RQ's tools put back one at a time (`rq requeue --all` requeues job after job) join one
-- batch: a batch a requeued task joins or opens is held open for HOLD seconds after the last one
-- joined, even with nothing pending, so that the next requeued task finds it active.  A finalize
-- member 'hold:<batch id>' falls due when the hold ends; CLAIM then ends the batch if it is done.
local HOLD, HOLD_PREFIX = 1, 'hold:'

local function hold(bid)
  redis.call('HSET', k.batch_prefix .. bid, 'held_until', tostring(k.now + HOLD))
  redis.call('ZADD', k.finalize, k.now + HOLD, HOLD_PREFIX .. bid)
end

local function hold_ended(member)  -- returns the batch this ended, or nil
  redis.call('ZREM', k.finalize, member)
  local bid = string.sub(member, #HOLD_PREFIX + 1)
  if tonumber(redis.call('HGET', k.batch_prefix .. bid, 'pending') or '1') > 0 then return nil end
  return end_batch(bid)
end
