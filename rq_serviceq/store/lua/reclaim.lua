-- KEYS: leases bell workers worker rq_workers
-- ARGV: job_prefix worker_name
--- @include "ring"
-- A worker is known to be dead (its supervisor saw it exit): make the tasks it
-- held claimable now instead of when their leases run out, and drop it from RQ's
-- worker registry (its queue's and RQ's set of all workers).   The context's worker is the dead one.
-- Returns how many tasks it held.
local n = 0
for _, id in ipairs(redis.call('ZRANGE', k.leases, 0, -1)) do
  if redis.call('HGET', k.job_prefix .. id, 'worker_name') == k.worker_name then
    redis.call('ZADD', k.leases, math.floor(k.now), id)  -- due now, on a whole second like every lease
    n = n + 1
  end
end
redis.call('SREM', k.workers, k.worker)
redis.call('SREM', k.rq_workers, k.worker)
redis.call('DEL', k.worker)
ring(math.max(n, 1))
return n
