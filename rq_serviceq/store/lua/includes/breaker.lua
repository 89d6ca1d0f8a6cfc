--- @include "bump"
--- @include "events"
--- @include "pause"

-- The breaker (ServiceQ.set_breaker): the service queue pauses itself, as pause() would
-- (includes/pause.lua), when in the active batch, since it opened or was last resumed, at least
-- min_tasks tasks have ended and failed/ended >= failure_ratio, or consecutive_failures attempts in
-- a row have failed.  "Ended" is the batch ledger's passed + failed (a task ended for good, however);
-- "in a row" counts attempts as SETTLE records them, in the order its calls land: a failure counts,
-- one scheduled to retry too, a pass starts the row again.  The settings come as Python validated
-- them (scripts.Rules), nil for off; a stored value damaged by hand loads as off there.  The ledger's
-- fields kept here (breaker_passed, breaker_failed, breaker_streak) read as 0 when damaged (counter()).
local streak_of = {}  -- batch id -> its failures in a row, as this script has changed them

local function breaker_armed()
  local ratio, least, row = k.failure_ratio, k.min_tasks, k.consecutive_failures
  return (ratio and ratio > 0 and least and least >= 1) or (row and row >= 1)
end

-- One attempt's result as settle_one made it (passed|failed|retry|stale), of a task of batch `bid`.
local function breaker_note(result, bid)
  if not k.consecutive_failures or not bid or result == 'stale' then return end
  if streak_of[bid] == nil then
    streak_of[bid] = counter(redis.call('HGET', k.batch_prefix .. bid, 'breaker_streak'))
  end
  streak_of[bid] = result == 'passed' and 0 or streak_of[bid] + 1
end

-- Why the breaker trips on batch hash `bk` now, or nil.
local function trip_reason(bk, streak)
  local ratio, least, row = k.failure_ratio, k.min_tasks, k.consecutive_failures
  if ratio and ratio > 0 and least and least >= 1 then
    local c = redis.call('HMGET', bk, 'passed', 'failed', 'breaker_passed', 'breaker_failed')
    local failed = math.max(0, counter(c[2]) - counter(c[4]))
    local ended = failed + math.max(0, counter(c[1]) - counter(c[3]))
    if ended >= least and failed / ended >= ratio then
      return 'breaker: ' .. failed .. ' of ' .. ended .. ' ended tasks failed'
    end
  end
  if row and row >= 1 and streak and streak >= row then return 'breaker: ' .. streak .. ' tasks in a row failed' end
  return nil
end

-- After the outcomes are counted (progress() has written the ledgers): keep the active batch's row of
-- failures and trip if it is time.  Returns the reason it tripped for, or ''.
local function breaker_check()
  if not breaker_armed() then return '' end
  local bid = redis.call('HGET', k.state, 'active_batch')
  if not bid then return '' end  -- the batch ended: nothing is left to hold back
  local bk = k.batch_prefix .. bid
  if streak_of[bid] ~= nil then redis.call('HSET', bk, 'breaker_streak', streak_of[bid]) end
  local status = redis.call('HGET', k.state, 'status')
  if (status ~= S.RUNNING and status ~= S.PENDING) or redis.call('HGET', bk, 'stopped') == '1' then return '' end
  local reason = trip_reason(bk, streak_of[bid])
  if not reason then return '' end
  event('breaker', bid, 'reason', reason)
  pause_queue(reason)
  redis.call('HINCRBY', k.totals, 'breaker_trips', 1)
  return reason
end
