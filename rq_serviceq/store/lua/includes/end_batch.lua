--- @include "events"
--- @include "ring"

-- End a batch whose last task was counted, once (the caller that wins HSETNX on end_time): its end
-- work is leased to the caller.  Returns its id, or nil when it had ended already.
local function end_batch(bid)
  local bk = k.batch_prefix .. bid
  if redis.call('HSETNX', bk, 'end_time', tostring(k.now)) == 0 then return nil end
  redis.call('HSET', bk, 'status', S.ENDING)
  ending[#ending + 1] = bid
  if redis.call('HGET', k.state, 'active_batch') == bid then redis.call('HDEL', k.state, 'active_batch') end
  redis.call('ZADD', k.finalize, k.now + k.finalize_lease, bid)
  ring(64)
  return bid
end
