-- A task of a batch stop() ended is failed with the STOPPED remark instead of run or retried.
local STOPPED = 'STOPPED | the service queue was stopped before this task '
local stopped_batches = {}  -- batch id -> stopped?, read once per script: a group is mostly of one batch

local function batch_is_stopped(bid)
  if not bid then return false end
  if stopped_batches[bid] == nil then
    stopped_batches[bid] = redis.call('HGET', k.batch_prefix .. bid, 'stopped') == '1'
  end
  return stopped_batches[bid]
end

local function batch_stopped(id)
  return batch_is_stopped(redis.call('HGET', k.job_prefix .. id, 'sq_batch'))
end
