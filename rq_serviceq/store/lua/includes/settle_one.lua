--- @include "events"
--- @include "unlease"
--- @include "batch_stopped"
--- @include "record_result"
--- @include "end_task"

-- One attempt's outcome as its worker reported it, under the settings Python validated (scripts.Rules).
local function retry_config()
  return {limit = k.retry_limit, resting = k.resting_period, backoff = k.loop_backoff}
end

-- Record one attempt's outcome (verdict pass|retry|fail) under claim token `claim`.
-- Returns the result row {id, passed|failed|retry|stale, due, retries} and the batch
-- this ended (or nil).
local function settle_one(id, claim, verdict, remark, cfg)
  local jk = k.job_prefix .. id
  if redis.call('HGET', jk, 'sq_claim') ~= claim then return {id, 'stale', '', ''}, nil end
  unlease(id, claim)
  local retries = retries_of(jk)
  local stopped = batch_stopped(id)
  if verdict == 'retry' and retries < cfg.limit and not stopped then
    retries = retries + 1
    local due = k.now + cfg.resting + (retries - 1) * cfg.backoff
    redis.call('HSET', jk, 'status', 'scheduled', 'sq_retries', retries, 'sq_due', tostring(due),
      'sq_claim', '', 'sq_last', tostring(k.now), 'sq_remark', remark)
    redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
    redis.call('ZADD', k.retry, due, id)
    record_result(id, 'retry', remark, retries)
    touch(redis.call('HGET', jk, 'sq_batch'), 1)
    tally('retried', 1)
    return {id, 'retry', tostring(due), retries}, nil
  end
  if verdict == 'retry' and retries < cfg.limit then remark = STOPPED .. 'could be retried: ' .. remark end
  return {id, verdict == 'pass' and 'passed' or 'failed', '', retries}, end_task(id, verdict == 'pass', remark)
end
