-- KEYS: state bell events totals
-- ARGV: batch_prefix
--- @include "bump"
--- @include "events"
--- @include "ring"
-- Pause or resume: ARGV[A] 'PAUSED' or 'RESUME'.  Pausing bumps pause_gen, which
-- workers compare with the generation their claim saw before starting a task.
-- Returns {status, pause_gen}
local status = redis.call('HGET', k.state, 'status') or S.CREATED
if ARGV[A] == S.PAUSED then
  if status ~= S.PAUSED then redis.call('HSET', k.state, 'status', S.PAUSED, 'paused_from', status) end
  bump(k.state, 'pause_gen')
  event('paused', redis.call('HGET', k.state, 'active_batch'))
elseif status == S.PAUSED then
  local active = redis.call('HGET', k.state, 'active_batch')
  local last = redis.call('HGET', k.state, 'last_batch')
  local back = active and S.RUNNING or (last and S.FINISHED or S.CREATED)
  redis.call('HSET', k.state, 'status', back)
  event('resumed', active)
  ring(64)
end
return {redis.call('HGET', k.state, 'status'), redis.call('HGET', k.state, 'pause_gen') or '0'}
