-- What an id popped from the queue stands for, read before anything is written: 'task' (a queued
-- task of this service queue), 'requeued' (a task that had ended, put back by RQ's tools, which
-- set it queued and left its data), 'foreign' (an RQ job that is no task of a service queue,
-- enqueued on its queue by RQ's own API), or nil for a leftover to drop: the id of a job hash
-- deleted by hand (the audit counts its task) or of a task that has ended.  Nothing about a
-- leftover is written, so no step can fail half-way on it.
local function kind_of(batch, final, status, data)
  if not batch then return status and 'foreign' or nil end
  if not final then return 'task' end
  if status == 'queued' and data then return 'requeued' end
  return nil
end

local function queued_kind(id)
  local f = redis.call('HMGET', k.job_prefix .. id, 'sq_batch', 'sq_final', 'status', 'data')
  return kind_of(f[1], f[2], f[3], f[4])
end

-- A foreign job is filed under RQ's failed registry with the reason, where RQ's tools show it.
local function refuse_foreign(id)
  redis.call('HSET', k.job_prefix .. id, 'status', 'failed', 'ended_at', k.stamp, 'exc_info',
    'not a task of service queue ' .. k.name .. ': push tasks with ServiceQ.push, not Queue.enqueue')
  redis.call('ZADD', k.failed, math.ceil(k.now + k.ttl), id)
end
