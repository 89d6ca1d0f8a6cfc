--- @include "later"

-- The progress feed: a capped stream of batch events (ServiceQ.events) that a CLI or a
-- web page follows instead of polling.  Counts are gathered while a script runs and
-- written as one `progress` event per batch it touched, by progress() before it returns.
local EVENTS_MAX = 10000
local touched = {}  -- batch id -> tasks it scheduled to retry in this script
local ending = {}  -- batches whose last task this script counted
local tallies = {}  -- totals field (pushed, passed, failed, retried, lost) -> count this script adds (totals.py)

local function event(kind, bid, ...)
  redis.call('XADD', k.events, 'MAXLEN', '~', EVENTS_MAX, '*', 'type', kind, 'batch', bid or '', ...)
end

local function touch(bid, retried)
  if bid then touched[bid] = (touched[bid] or 0) + retried end
end

local function tally(field, n)
  tallies[field] = (tallies[field] or 0) + n
end

local function progress()
  flush()  -- the deferred writes first: the events below read the ledgers they change
  for bid, retried in pairs(touched) do
    local c = redis.call('HMGET', k.batch_prefix .. bid, 'submitted', 'passed', 'failed', 'pending')
    event('progress', bid, 'submitted', c[1] or 0, 'passed', c[2] or 0, 'failed', c[3] or 0, 'pending', c[4] or 0,
      'retried', retried)
  end
  for _, bid in ipairs(ending) do event('ended', bid) end
  for field, n in pairs(tallies) do redis.call('HINCRBY', k.totals, field, n) end
  touched, ending, tallies = {}, {}, {}
end
