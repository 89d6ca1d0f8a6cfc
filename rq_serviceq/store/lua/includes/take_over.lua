--- @include "bump"
--- @include "events"
--- @include "unlease"
--- @include "end_task"
--- @include "settle_one"

local LOSS_FLOOR = 3  -- a task is failed for killing workers only after this many deaths, whatever retry_limit

-- A task whose lease ran out (its worker is gone).  Its journal says what happened:
-- an outcome recorded under the current claim is settled as if reported; a task that
-- had started counts a worker death, and fails once it has killed max(retry_limit,
-- LOSS_FLOOR) workers; a task that never started is simply handed out again.
-- Returns again (true: hand it out), ended batch id or nil.
local function take_over(id, cfg)
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'sq_claim', 'sq_started', 'sq_outcome', 'worker_name')
  local claim, started, journal, owner = f[1], f[2], f[3], f[4]
  if journal and claim and string.sub(journal, 1, #claim + 1) == claim .. '\31' then
    local rest = string.sub(journal, #claim + 2)
    local sep = string.find(rest, '\31', 1, true)
    if sep then
      local _, bid = settle_one(id, claim, string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1), cfg)
      return false, bid
    end
  end
  if started and started == claim then
    local lost = bump(jk, 'sq_lost')
    tally('lost', 1)
    if lost >= math.max(cfg.limit, LOSS_FLOOR) then
      unlease(id, claim)
      return false, end_task(id, false, 'NO_RETRY | worker died ' .. lost .. ' times running this task (last: '
        .. (owner or '?') .. ')')
    end
  end
  return true, nil
end
