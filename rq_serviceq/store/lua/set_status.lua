-- KEYS: state bell events totals
-- ARGV: batch_prefix
--- @include "bump"
--- @include "events"
--- @include "ring"
--- @include "pause"
-- Pause or resume: ARGV[A] 'PAUSED' or 'RESUME'.  Pausing bumps pause_gen, which
-- workers compare with the generation their claim saw before starting a task; its
-- pause_reason is "paused by hand" unless the breaker paused it first.  Resuming
-- clears pause_reason, and the breaker counts the active batch afresh from here.
-- Returns {status, pause_gen}
local status = redis.call('HGET', k.state, 'status') or S.CREATED
if ARGV[A] == S.PAUSED then
  pause_queue('paused by hand')
elseif status == S.PAUSED then
  local active = redis.call('HGET', k.state, 'active_batch')
  local last = redis.call('HGET', k.state, 'last_batch')
  local back = active and S.RUNNING or (last and S.FINISHED or S.CREATED)
  redis.call('HSET', k.state, 'status', back)
  redis.call('HDEL', k.state, 'pause_reason')
  count_afresh(active)
  event('resumed', active)
  ring(64)
end
return {redis.call('HGET', k.state, 'status'), redis.call('HGET', k.state, 'pause_gen') or '0'}
