-- READ-ONLY: the figures of many service queues in one call, where a pipeline would cost ~9 commands a
-- queue (and redis-py some 50 us to send and parse each one).  Writes nothing, so it runs on a full Redis.
-- ARGV: the key shapes keys.py gives (the text before and after a queue's name) of the state, totals,
-- pending queue, retry, leases, supervisors and workers keys, and the batch prefix (an id follows it);
-- RQ's worker prefix; then the names.
-- Returns one JSON array (cjson): per name [name, totals as a flat list, [status, worker_count,
-- active_batch, last_batch], queued, waiting retries, in flight, live supervisors, live workers,
-- the ledger's [submitted, passed, failed, pending]].  A missing field is false; an empty list may be {}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SHAPES = 8
local worker_prefix = ARGV[2 * SHAPES + 1]
local function key(i, name) return ARGV[2 * i - 1] .. name .. ARGV[2 * i] end
local out = {}
for n = 2 * SHAPES + 2, #ARGV do
  local name = ARGV[n]
  local st = redis.call('HMGET', key(1, name), 'status', 'worker_count', 'active_batch', 'last_batch')
  local live = 0
  for _, w in ipairs(redis.call('SMEMBERS', key(7, name))) do
    if string.sub(w, 1, #worker_prefix) ~= worker_prefix then w = worker_prefix .. w end
    live = live + redis.call('EXISTS', w)
  end
  local batch = st[3] or st[4]
  local ledger = {}
  if batch then
    ledger = redis.call('HMGET', key(8, name) .. batch, 'submitted', 'passed', 'failed', 'pending')
  end
  out[#out + 1] = {name, redis.call('HGETALL', key(2, name)), st, redis.call('LLEN', key(3, name)),
    redis.call('ZCARD', key(4, name)), redis.call('ZCARD', key(5, name)),
    redis.call('ZCOUNT', key(6, name), now, '+inf'), live, ledger}
end
return cjson.encode(out)
