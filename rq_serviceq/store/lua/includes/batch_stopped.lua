-- A task of a batch stop() ended is failed with the STOPPED remark instead of run or retried.
local STOPPED = 'STOPPED | the service queue was stopped before this task '

local function batch_stopped(id)
  local bid = redis.call('HGET', k.job_prefix .. id, 'sq_batch')
  return bid and redis.call('HGET', k.batch_prefix .. bid, 'stopped') == '1'
end
