-- READ-ONLY: the figures of many service queues in one call, where a pipeline would cost ~9 commands a
-- queue (and redis-py some 50 us to send and parse each one).  Writes nothing, so it runs on a full Redis.
-- ARGV: the key shapes keys.py gives (the text before and after a queue's name) of the state, totals,
-- pending queue, retry, leases, supervisors and workers keys, and the batch prefix (an id follows it);
-- RQ's worker prefix; then the names.
-- Returns one JSON array (cjson): per name [name, totals as a flat list, [status, worker_count,
-- active_batch, last_batch], queued, waiting retries, in flight, live supervisors, live workers,
-- the ledger's [submitted, passed, failed, pending]].  A missing field is false; an empty list may be {}.
local call = redis.call
local t = call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local SHAPES = 8
local shape = {}
for i = 1, SHAPES do shape[i] = {ARGV[2 * i - 1], ARGV[2 * i]} end
local state_, totals_, queue_, retry_, leases_, supervisors_, workers_, batch_ = unpack(shape)
local worker_prefix = ARGV[2 * SHAPES + 1]
local prefix_length = #worker_prefix
local out = {}
for n = 2 * SHAPES + 2, #ARGV do
  local name = ARGV[n]
  local st = call('HMGET', state_[1] .. name .. state_[2], 'status', 'worker_count', 'active_batch', 'last_batch')
  local live = 0
  for _, w in ipairs(call('SMEMBERS', workers_[1] .. name .. workers_[2])) do
    if string.sub(w, 1, prefix_length) ~= worker_prefix then w = worker_prefix .. w end
    live = live + call('EXISTS', w)
  end
  local batch = st[3] or st[4]
  local ledger = {}
  if batch then
    ledger = call('HMGET', batch_[1] .. name .. batch_[2] .. batch, 'submitted', 'passed', 'failed', 'pending')
  end
  out[#out + 1] = {name, call('HGETALL', totals_[1] .. name .. totals_[2]), st,
    call('LLEN', queue_[1] .. name .. queue_[2]), call('ZCARD', retry_[1] .. name .. retry_[2]),
    call('ZCARD', leases_[1] .. name .. leases_[2]),
    call('ZCOUNT', supervisors_[1] .. name .. supervisors_[2], now, '+inf'), live, ledger}
end
return cjson.encode(out)
