--- @include "encode"

-- Settings (k.result_ttl here, the retry settings in settle_one) are handed in by the caller as Python validated them
-- (scripts.Rules): a value stored by hand loads as its default there, and Lua never parses one.
local function record_result(id, outcome, remark, retries)
  local result_ttl = k.result_ttl
  if result_ttl > 0 then
    local rk = k.results_prefix .. id
    local payload = outcome == 'passed' and 'return_value' or 'exc_string'
    redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', 'type', RESULT_TYPE[outcome], 'worker_name', k.worker_name,
      payload, result_value(outcome, remark))
    redis.call('EXPIRE', rk, result_ttl)
  end
  local jk = k.job_prefix .. id
  redis.call('HSET', jk, 'meta', cjson.encode({serviceq = k.name, batch_id = redis.call('HGET', jk, 'sq_batch'),
    remark = remark, total_retry_attempts = retries, outcome = outcome}))
end
