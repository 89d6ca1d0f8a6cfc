--- @include "events"

-- The service queue's start budget, on Redis' clock, in the hash k.rate (issue 18):
--   tat     the rate limit's theoretical arrival time (GCRA): a start spends 1/rate_limit seconds of it,
--           and up to rate_burst starts may be spent at once after an idle spell;
--   until   no task starts before this time (a task raised Throttle(after=...)), why: its remark;
--   held    the last time a claim was cut short by either (status info's "held back");
--   w wn pn the start of the current RATE_WINDOW-second window, the tasks claimed in it and in the one
--           before, s the first claim after an idle spell: status info's recent rate.
-- The limit is read from the state hash at every claim, so a change takes effect at once; a value stored
-- by hand that is not a positive number is no limit (Python's loader reads it so too: its default).
local RATE_WINDOW = 5
local RATE_MAX = 1000000  -- models.MAX_RATE_LIMIT
local rate_interval, rate_used = nil, false  -- 1/rate_limit of this script's claim; k.rate was written

local function rate_settings()
  local raw = redis.call('HMGET', k.state, 'rate_limit', 'rate_burst')
  local r = tonumber(raw[1] or '')
  if not r or r ~= r or r <= 0 or r > RATE_MAX then return nil, nil end
  local b = tonumber(raw[2] or '')
  if not b or b ~= b or b < 1 or b > RATE_MAX then b = math.max(1, math.ceil(r)) end
  return r, math.floor(b)
end

-- How many of `want` tasks may start now, and, when none may, the time the next one may (nil: no limit
-- is in the way).  Called once per claim, before it takes tasks; spend() then says how many it took.
local function budget(want)
  local f = redis.call('HMGET', k.rate, 'tat', 'until')
  local hold = tonumber(f[2] or '') or 0
  if hold > k.now then
    redis.call('HSET', k.rate, 'held', tostring(k.now))
    return 0, hold
  end
  local r, b = rate_settings()
  if not r then return want, nil end
  rate_interval = 1 / r
  local tat = math.max(tonumber(f[1] or '') or 0, k.now)
  local n = math.floor((k.now + b * rate_interval - tat) / rate_interval + 1e-9)
  if n < want then redis.call('HSET', k.rate, 'held', tostring(k.now)) end
  if n <= 0 then return 0, tat - (b - 1) * rate_interval end
  return math.min(want, n), nil
end

-- `n` tasks were handed out by this claim: spend them from the budget and count them for the recent rate.
local function rate_expire(tat, until_)  -- the hash outlives what it holds by three windows
  local last = math.max(tonumber(tat or '') or 0, tonumber(until_ or '') or 0, k.now)
  redis.call('PEXPIREAT', k.rate, math.ceil((last + 3 * RATE_WINDOW) * 1000))
end

local function spend(n)
  if not rate_interval or n == 0 then return end
  local f = redis.call('HMGET', k.rate, 'tat', 'w', 'wn', 'until')
  local tat = math.max(tonumber(f[1] or '') or 0, k.now) + n * rate_interval
  local w, win = tonumber(f[2] or '') or 0, math.floor(k.now / RATE_WINDOW) * RATE_WINDOW
  if w == win then
    redis.call('HSET', k.rate, 'tat', tostring(tat), 'wn', (tonumber(f[3] or '') or 0) + n)
  elseif w == win - RATE_WINDOW then
    redis.call('HSET', k.rate, 'tat', tostring(tat), 'w', win, 'wn', n, 'pn', tonumber(f[3] or '') or 0)
  else  -- the first claim after an idle spell: the recent rate is over the time since
    redis.call('HSET', k.rate, 'tat', tostring(tat), 'w', win, 'wn', n, 'pn', 0, 's', tostring(k.now))
  end
  rate_expire(tat, f[4])
end

-- A task raised Throttle(after=...): no task of this service queue starts for `after` seconds.
local function hold_starts(after, remark, bid)
  local f = redis.call('HMGET', k.rate, 'until', 'tat')
  local until_ = math.max(tonumber(f[1] or '') or 0, k.now + after)
  redis.call('HSET', k.rate, 'until', tostring(until_), 'why', remark)
  rate_expire(f[2], until_)
  event('throttled', bid, 'until', tostring(until_), 'remark', remark)
end
