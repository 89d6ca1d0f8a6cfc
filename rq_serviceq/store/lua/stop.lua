-- KEYS: state bell events totals
-- ARGV: batch_prefix
--- @include "bump"
--- @include "events"
--- @include "ring"
-- Stop the active batch: from now on no task of it starts and none is retried; the
-- service queue has no active batch, so the next push opens a new one.  The tasks
-- themselves are failed by STOP_SLICE, a bounded slice at a time, so that stopping
-- a million-task batch never blocks Redis.  Returns {batch id or '', pause_gen}
local bid = redis.call('HGET', k.state, 'active_batch')
bump(k.state, 'pause_gen')
redis.call('HSET', k.state, 'status', S.STOPPED)
if bid then
  redis.call('HSET', k.batch_prefix .. bid, 'stopped', '1', 'final_status', S.STOPPED)
  redis.call('HDEL', k.state, 'active_batch')
end
event('stopped', bid)
ring(64)
return {bid or '', redis.call('HGET', k.state, 'pause_gen')}
