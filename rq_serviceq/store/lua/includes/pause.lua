--- @include "bump"
--- @include "events"

-- Pausing, one mechanism for pause() (SET_STATUS) and the breaker (SETTLE, includes/breaker.lua): the
-- status PAUSED (claims hand out nothing), the status it paused from, why (pause_reason: the first
-- pause's reason stands until resume), a new pause generation (a worker holding a group claimed
-- before it starts none of its tasks) and a `paused` event.  Returns the new pause generation.
local function pause_queue(reason)
  local status = redis.call('HGET', k.state, 'status') or S.CREATED
  if status ~= S.PAUSED then
    redis.call('HSET', k.state, 'status', S.PAUSED, 'paused_from', status, 'pause_reason', reason)
  end
  local gen = bump(k.state, 'pause_gen')
  event('paused', redis.call('HGET', k.state, 'active_batch'), 'reason',
    redis.call('HGET', k.state, 'pause_reason') or '')
  return gen
end

-- From a resume on, the breaker counts batch `bid` afresh: its ledger's counts now are where the
-- failure ratio starts from (breaker_passed, breaker_failed), and no failure is in a row.
local function count_afresh(bid)
  if not bid then return end
  local bk = k.batch_prefix .. bid
  local c = redis.call('HMGET', bk, 'passed', 'failed')
  redis.call('HSET', bk, 'breaker_passed', counter(c[1]), 'breaker_failed', counter(c[2]), 'breaker_streak', 0)
end
