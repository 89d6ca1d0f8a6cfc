--- @include "bump"
--- @include "events"
--- @include "unlease"
--- @include "end_task"
--- @include "settle_one"

local LOSS_FLOOR = 3  -- a task is failed for killing workers only after this many deaths, whatever retry_limit

-- A worker's journal (worker/journal.py), read once per script: the list's entries are
-- 's<id>\31<claim>' (started) and 'o<id>\31<claim>\31<verdict>\31<remark>' (its outcome).
local journals = {}
local function journal_of(owner)
  if journals[owner] then return journals[owner] end
  local j = {starts = {}, outcomes = {}}
  for _, e in ipairs(redis.call('LRANGE', k.journal_prefix .. owner, 0, -1)) do
    local a = string.find(e, '\31', 2, true)
    if a then
      local kind, id, rest = string.sub(e, 1, 1), string.sub(e, 2, a - 1), string.sub(e, a + 1)
      if kind == 's' then
        j.starts[id] = rest
      elseif kind == 'o' then
        local b = string.find(rest, '\31', 1, true)
        local c = b and string.find(rest, '\31', b + 1, true)
        if c then j.outcomes[id] = {string.sub(rest, 1, b - 1), string.sub(rest, b + 1, c - 1), string.sub(rest, c + 1)} end
      end
    end
  end
  journals[owner] = j
  return j
end

-- A task whose lease ran out (its worker is gone).  Its worker's journal says what happened:
-- an outcome recorded under the current claim is settled as if reported; a task that
-- had started counts a worker death, and fails once it has killed max(retry_limit,
-- LOSS_FLOOR) workers; a task that never started is simply handed out again.
-- Returns again (true: hand it out), ended batch id or nil.
local function take_over(id, cfg)
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'sq_claim', 'worker_name')
  local claim, owner = f[1], f[2]
  local j = (owner and owner ~= '') and journal_of(owner) or {starts = {}, outcomes = {}}
  local outcome = j.outcomes[id]
  if claim and outcome and outcome[1] == claim then
    local _, bid = settle_one(id, claim, outcome[2], outcome[3], cfg)
    return false, bid
  end
  if claim and j.starts[id] == claim then
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
