-- KEYS: leases bell workers worker journal rq_workers
-- ARGV: job_prefix worker_name
--- @include "ring"
-- A worker is known to be dead (its supervisor saw it exit, or its watcher: worker/spool.py): make the
-- tasks it held claimable now instead of when their leases run out, and drop it from RQ's worker
-- registry (its queue's and RQ's set of all workers).   The context's worker is the dead one.
-- ARGV[A] seconds its journal is kept   ARGV[A+1..] entries of its journal's spool, appended to the
-- journal (the list the takeover reads, includes/take_over.lua) before any of its tasks is due.
-- Returns how many tasks it held.
for i = A + 1, #ARGV, 1000 do  -- Lua's unpack has a stack limit
  redis.call('RPUSH', k.journal, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if #ARGV > A then redis.call('EXPIRE', k.journal, tonumber(ARGV[A])) end
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
