--- @include "events"
--- @include "unlease"
--- @include "batch_stopped"
--- @include "record_result"
--- @include "end_task"
--- @include "rate"

-- One attempt's outcome as its worker reported it, under the settings Python validated (scripts.Rules).
local function retry_config()
  return {limit = k.retry_limit, resting = k.resting_period, backoff = k.loop_backoff}
end

local DAY = 86400

-- A verdict as workers send it: pass, retry or fail, or retry:<seconds> (Retry(after=...): the next attempt
-- no sooner) or throttle:<seconds> (Throttle(after=...): that, and no start of this service queue until then).
local function verdict_of(sent)
  local kind, after = string.match(sent, '^(%a+):(.+)$')
  if not kind then return sent, 0, false end
  after = tonumber(after) or 0
  if after ~= after or after < 0 then after = 0 end  -- NaN or negative: no wait (Python refuses both)
  return 'retry', math.min(after, DAY), kind == 'throttle'
end

-- Record one attempt's outcome (verdict as verdict_of reads it) under claim token `claim`.
-- Returns the result row {id, passed|failed|retry|stale, due, retries}, the batch
-- this ended (or nil) and the task's batch (nil for a stale outcome).
local function settle_one(id, claim, sent, remark, cfg)
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'sq_claim', 'sq_batch', 'sq_final', 'sq_retries')
  if f[1] ~= claim then return {id, 'stale', '', ''}, nil end
  local verdict, after, throttle = verdict_of(sent)
  if throttle then hold_starts(after, remark, f[2]) end
  unlease(id, claim)
  local retries = retries_of(f[4])
  local stopped = batch_is_stopped(f[2])
  if verdict == 'retry' and retries < cfg.limit and not stopped then
    retries = retries + 1
    local due = math.max(k.now + cfg.resting + (retries - 1) * cfg.backoff, k.now + after)
    redis.call('HSET', jk, 'status', 'scheduled', 'sq_retries', retries, 'sq_due', tostring(due),
      'sq_claim', '-' .. claim, 'sq_last', tostring(k.now), 'sq_remark', remark)  -- let go: '-' and its count
    defer('zadd', k.retry, due, id)
    record_result(id, 'retry', remark, retries, f[2])
    touch(f[2], 1)
    tally('retried', 1)
    return {id, 'retry', tostring(due), retries}, nil, f[2]
  end
  if verdict == 'retry' and retries < cfg.limit then remark = STOPPED .. 'could be retried: ' .. remark end
  local passed = verdict == 'pass'
  local ended = end_task(id, passed, remark, {f[2], f[3], f[4]})
  return {id, passed and 'passed' or 'failed', '', retries}, ended, f[2]
end
