-- KEYS: state finalize bell events totals
-- ARGV: batch_prefix
--- @include "events"
--- @include "ring"
-- Mark a batch's end work (report, batch-end callback) done.  The service queue
-- takes the batch's final status only if no newer batch has opened meanwhile.
-- ARGV[A] batch id   ARGV[A+1] final status (FINISHED|STOPPED), or 'BEGUN' for the batch-begin work
-- Returns 1 when this call finished the batch, 0 when it had been finished already.
local bk = k.batch_prefix .. ARGV[A]
if ARGV[A + 1] == 'BEGUN' then return redis.call('ZREM', k.finalize, 'begin:' .. ARGV[A]) end
redis.call('ZREM', k.finalize, ARGV[A])
-- Burst workers wait for batch work in flight before they leave: tell them it is done now,
-- rather than at their next heartbeat (up to 5 s).
ring(64)
if redis.call('HGET', bk, 'finalized') then return 0 end
redis.call('HSET', bk, 'finalized', tostring(k.now), 'status', ARGV[A + 1])
event('finished', ARGV[A], 'status', ARGV[A + 1])
if not redis.call('HGET', k.state, 'active_batch') and redis.call('HGET', k.state, 'status') ~= S.PAUSED then
  redis.call('HSET', k.state, 'status', ARGV[A + 1])
end
return 1
