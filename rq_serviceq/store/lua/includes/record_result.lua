--- @include "encode"

-- What RQ's own readers find of an attempt that did not pass (a retry, a failure): a Result entry in
-- the job's result stream for result_ttl seconds, and the ServiceQ fields in the job's meta.  A passed
-- attempt writes neither: its job hash says `finished`, and ServiceQJob answers latest_result() and
-- get_meta() from the hash (docs/rq.md), which saves some 4 KB of Redis per passed task.
-- Settings (k.result_ttl here, the retry settings in settle_one) are handed in by the caller as Python validated them
-- (scripts.Rules): a value stored by hand loads as its default there, and Lua never parses one.
local function record_result(id, outcome, remark, retries, bid)
  local result_ttl = k.result_ttl
  if result_ttl > 0 then
    local rk = k.results_prefix .. id
    redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', 'type', RESULT_TYPE[outcome], 'worker_name', k.worker_name,
      'exc_string', result_value(outcome, remark))
    redis.call('EXPIRE', rk, result_ttl)
  end
  redis.call('HSET', k.job_prefix .. id, 'meta', cjson.encode({serviceq = k.name, batch_id = bid,
    remark = remark, total_retry_attempts = retries, outcome = outcome}))
end
