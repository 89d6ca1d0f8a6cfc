-- KEYS: state leases finalize workers worker
-- ARGV:
-- A burst worker with nothing left to do takes itself (k.worker) out of RQ's registry of the pending
-- queue's workers (k.workers) in the same step as seeing nothing to do.  So a push that opens a batch
-- after this finds it gone, and start() starts a worker for the batch; a batch opened before it makes it
-- stay, still registered, and claim again.  Never a batch that counted a leaving worker as its own.
-- The test is CLAIM's (no active batch, no work in flight), so a worker CLAIM sent here stays only when
-- the next CLAIM will find something.
-- Returns 1: left; 0: stay (a batch is active, or leased work is outstanding).
local active = redis.call('HGET', k.state, 'active_batch') or ''
if active ~= '' or redis.call('ZCARD', k.leases) + redis.call('ZCARD', k.finalize) > 0 then return 0 end
redis.call('SREM', k.workers, k.worker)
return 1
