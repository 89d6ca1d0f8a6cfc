--- @include "events"

-- The active batch, or a new one (id new_bid) when none is active.  A new batch's
-- begin callback is leased work: due at begin_due, run by its pusher or, failing
-- that, by a worker.  Returns bid, opened (0|1).
local function open_or_join(new_bid, begin_due)
  local bid = redis.call('HGET', k.state, 'active_batch')
  if bid then return bid, 0 end
  redis.call('HSET', k.state, 'active_batch', new_bid, 'last_batch', new_bid)
  if redis.call('HGET', k.state, 'status') ~= S.PAUSED then redis.call('HSET', k.state, 'status', S.PENDING) end
  redis.call('HSET', k.batch_prefix .. new_bid, 'batch_id', new_bid, 'start_time', tostring(k.now),
    'status', S.PENDING, 'submitted', 0, 'passed', 0, 'failed', 0, 'pending', 0)
  redis.call('ZADD', k.batches, k.now, new_bid)
  redis.call('ZADD', k.finalize, begin_due, 'begin:' .. new_bid)
  event('opened', new_bid)
  return new_bid, 1
end

-- Count tasks into a batch: its ledger and its set of open (not yet ended) tasks,
-- which is how a task removed behind rq-serviceq's back is found (see RECONCILE).
local function count_in(bid, ids)
  local bk = k.batch_prefix .. bid
  for i = 1, #ids, 1000 do redis.call('SADD', bk .. ':open', unpack(ids, i, math.min(i + 999, #ids))) end
  redis.call('HINCRBY', bk, 'submitted', #ids)
  redis.call('HINCRBY', bk, 'pending', #ids)
  touch(bid, 0)
  tally('pushed', #ids)
end
