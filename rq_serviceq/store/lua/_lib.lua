-- Steps several scripts share; loaded after the generated context header, before each script.
-- The progress feed: a capped stream of batch events (ServiceQ.events) that a CLI or a
-- web page follows instead of polling.  Counts are gathered while a script runs and
-- written as one `progress` event per batch it touched, by progress() before it returns.
local EVENTS_MAX = 10000
local touched = {}  -- batch id -> tasks it scheduled to retry in this script
local ending = {}  -- batches whose last task this script counted
local tallies = {}  -- totals field (pushed, passed, failed, retried, lost) -> count this script adds (totals.py)

-- HINCRBY by 1 that a field damaged by hand cannot make fail half-way (Redis scripts are not rolled
-- back): a value that is no whole number from 0 to 2^53 counts as 0.  Returns the new value.
local function bump(key, field)
  local v = tonumber(redis.call('HGET', key, field) or '0')
  if not v or v ~= math.floor(v) or v < 0 or v >= 2 ^ 53 then v = 0 end
  redis.call('HSET', key, field, v + 1)
  return v + 1
end

-- A script's own arguments come in groups of `size` from ARGV[first]: checked before anything is
-- written, so that a caller that sends a short group (a producer in another language) changes nothing.
local function groups_of(size, first)
  if (#ARGV - first + 1) % size ~= 0 then
    return redis.error_reply('expected groups of ' .. size .. ' arguments from ARGV[' .. first .. '], got '
      .. (#ARGV - first + 1))
  end
  return nil
end

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
  for bid, retried in pairs(touched) do
    local c = redis.call('HMGET', k.batch_prefix .. bid, 'submitted', 'passed', 'failed', 'pending')
    event('progress', bid, 'submitted', c[1] or 0, 'passed', c[2] or 0, 'failed', c[3] or 0, 'pending', c[4] or 0,
      'retried', retried)
  end
  for _, bid in ipairs(ending) do event('ended', bid) end
  for field, n in pairs(tallies) do redis.call('HINCRBY', k.totals, field, n) end
  touched, ending, tallies = {}, {}, {}
end

local function ring(n)  -- wake up to n idle workers
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', k.bell, 'x') end
  redis.call('LTRIM', k.bell, 0, 63)
end

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

-- End a batch whose last task was counted, once (the caller that wins HSETNX on end_time): its end
-- work is leased to the caller.  Returns its id, or nil when it had ended already.
local function end_batch(bid)
  local bk = k.batch_prefix .. bid
  if redis.call('HSETNX', bk, 'end_time', tostring(k.now)) == 0 then return nil end
  redis.call('HSET', bk, 'status', S.ENDING)
  ending[#ending + 1] = bid
  if redis.call('HGET', k.state, 'active_batch') == bid then redis.call('HDEL', k.state, 'active_batch') end
  redis.call('ZADD', k.finalize, k.now + k.finalize_lease, bid)
  ring(64)
  return bid
end

-- Tasks RQ's tools put back one at a time (`rq requeue --all` requeues job after job) join one
-- batch: a batch a requeued task joins or opens is held open for HOLD seconds after the last one
-- joined, even with nothing pending, so that the next requeued task finds it active.  A finalize
-- member 'hold:<batch id>' falls due when the hold ends; CLAIM then ends the batch if it is done.
local HOLD, HOLD_PREFIX = 1, 'hold:'

local function hold(bid)
  redis.call('HSET', k.batch_prefix .. bid, 'held_until', tostring(k.now + HOLD))
  redis.call('ZADD', k.finalize, k.now + HOLD, HOLD_PREFIX .. bid)
end

local function hold_ended(member)  -- returns the batch this ended, or nil
  redis.call('ZREM', k.finalize, member)
  local bid = string.sub(member, #HOLD_PREFIX + 1)
  if tonumber(redis.call('HGET', k.batch_prefix .. bid, 'pending') or '1') > 0 then return nil end
  return end_batch(bid)
end

-- Count a task's end in its batch ledger, once: sq_final guards against a task
-- settled twice or put back by RQ tools after it had ended.  The step that takes
-- `pending` to 0 and wins HSETNX on end_time ends the batch; returns its id then.
local function count_end(jk, id, which)
  if redis.call('HSETNX', jk, 'sq_final', which) == 0 then return nil end
  local bid = redis.call('HGET', jk, 'sq_batch')
  local bk = k.batch_prefix .. bid
  redis.call('SREM', bk .. ':open', id)
  redis.call('RPUSH', bk .. ':' .. which, id)
  redis.call('HINCRBY', bk, which, 1)
  local pending = redis.call('HINCRBY', bk, 'pending', -1)
  touch(bid, 0)
  tally(which, 1)
  if k.worker_name ~= '' and redis.call('EXISTS', k.worker) == 1 then
    redis.call('HINCRBY', k.worker, which == 'passed' and 'successful_job_count' or 'failed_job_count', 1)
  end
  if pending <= 0 and tonumber(redis.call('HGET', bk, 'held_until') or '0') <= k.now then return end_batch(bid) end
  return nil
end

-- What RQ 2's own readers look for (job.latest_result(), job.return_value(), rq-dashboard's job
-- page): a Result entry per attempt's outcome in the job's result stream, and the ServiceQ fields
-- in the job's meta.  RQ stores a result's return value as base64 of the job serializer's JSON
-- and its exception text as base64 of zlib; Lua has neither, so the two are built here: zlib
-- as one uncompressed ("stored") deflate block, which every inflater reads.
local B64 = {}
for i = 0, 63 do
  B64[i] = string.sub('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', i + 1, i + 1)
end
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = B64[math.floor(n / 262144)] .. B64[math.floor(n / 4096) % 64]
      .. (b and B64[math.floor(n / 64) % 64] or '=') .. (c and B64[n % 64] or '=')
  end
  return table.concat(out)
end

local function zlib_stored(s)
  s = string.sub(s, 1, 65535)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + string.byte(s, i)) % 65521
    b = (b + a) % 65521
  end
  local len, nlen = #s, 65535 - #s
  return string.char(0x78, 0x01, 0x01, len % 256, math.floor(len / 256), nlen % 256, math.floor(nlen / 256))
    .. s .. string.char(math.floor(b / 256), b % 256, math.floor(a / 256), a % 256)
end

local RESULT_TYPE = {passed = 1, failed = 2, retry = 4}  -- RQ's Result.Type: SUCCESSFUL, FAILED, RETRIED

local encoded = {}  -- outcome .. remark -> the Result field's value: a group's remarks are mostly alike

local function result_value(outcome, remark)
  local key = outcome .. remark
  if not encoded[key] then
    encoded[key] = outcome == 'passed' and b64(cjson.encode(remark)) or b64(zlib_stored(remark))
  end
  return encoded[key]
end

-- Settings (k.result_ttl, k.retry_limit, ...) are handed in by the caller as Python validated them
-- (scripts.Rules): a value stored by hand loads as its default there, and Lua never parses one.
local function record_result(id, outcome, remark, retries)
  local result_ttl = k.result_ttl
  if result_ttl > 0 then
    local rk = k.results_prefix .. id
    local payload = outcome == 'passed' and 'return_value' or 'exc_string'
    redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', 'type', RESULT_TYPE[outcome], 'worker_name', k.worker_name,
      payload, result_value(outcome, remark))
    redis.call('EXPIRE', rk, result_ttl)
  end
  local jk = k.job_prefix .. id
  redis.call('HSET', jk, 'meta', cjson.encode({serviceq = k.name, batch_id = redis.call('HGET', jk, 'sq_batch'),
    remark = remark, total_retry_attempts = retries, outcome = outcome}))
end

local function retries_of(jk)  -- a hash damaged by hand counts as no retry rather than failing the step
  return tonumber(redis.call('HGET', jk, 'sq_retries') or '0') or 0
end

local function end_task(id, passed, remark)
  local jk = k.job_prefix .. id
  record_result(id, passed and 'passed' or 'failed', remark, retries_of(jk))
  redis.call('HSET', jk, 'status', passed and 'finished' or 'failed', 'ended_at', k.stamp,
    'sq_remark', remark, 'sq_last', tostring(k.now), 'sq_claim', '')
  redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
  if not passed then redis.call('HSET', jk, 'exc_info', remark) end  -- what rq-dashboard shows
  redis.call('ZADD', passed and k.finished or k.failed, k.now + k.ttl, id)
  return count_end(jk, id, passed and 'passed' or 'failed')
end

local function unlease(id, claim)
  redis.call('ZREM', k.leases, id)
  if claim and claim ~= '' then redis.call('ZREM', k.started, id .. ':' .. claim) end
end

local function batch_stopped(id)
  local bid = redis.call('HGET', k.job_prefix .. id, 'sq_batch')
  return bid and redis.call('HGET', k.batch_prefix .. bid, 'stopped') == '1'
end

-- What an id popped from the queue stands for, read before anything is written: 'task' (a queued
-- task of this service queue), 'requeued' (a task that had ended, put back by RQ's tools, which
-- set it queued and left its data), 'foreign' (an RQ job that is no task of a service queue,
-- enqueued on its queue by RQ's own API), or nil for a leftover to drop: the id of a job hash
-- deleted by hand (the audit counts its task) or of a task that has ended.  Nothing about a
-- leftover is written, so no step can fail half-way on it.
local function queued_kind(id)
  local f = redis.call('HMGET', k.job_prefix .. id, 'sq_batch', 'sq_final', 'status', 'data')
  if not f[1] then return f[3] and 'foreign' or nil end
  if not f[2] then return 'task' end
  if f[3] == 'queued' and f[4] then return 'requeued' end
  return nil
end

-- A foreign job is filed under RQ's failed registry with the reason, where RQ's tools show it.
local function refuse_foreign(id)
  redis.call('HSET', k.job_prefix .. id, 'status', 'failed', 'ended_at', k.stamp, 'exc_info',
    'not a task of service queue ' .. k.name .. ': push tasks with ServiceQ.push, not Queue.enqueue')
  redis.call('ZADD', k.failed, k.now + k.ttl, id)
end

local STOPPED = 'STOPPED | the service queue was stopped before this task '
local REMOVED = 'NO_RETRY | removed from the queue outside rq-serviceq '
local LOSS_FLOOR = 3  -- a task is failed for killing workers only after this many deaths, whatever retry_limit

local function retry_config()
  return {limit = k.retry_limit, resting = k.resting_period, backoff = k.loop_backoff}
end

-- Record one attempt's outcome (verdict pass|retry|fail) under claim token `claim`.
-- Returns the result row {id, passed|failed|retry|stale, due, retries} and the batch
-- this ended (or nil).
local function settle_one(id, claim, verdict, remark, cfg)
  local jk = k.job_prefix .. id
  if redis.call('HGET', jk, 'sq_claim') ~= claim then return {id, 'stale', '', ''}, nil end
  unlease(id, claim)
  local retries = retries_of(jk)
  local stopped = batch_stopped(id)
  if verdict == 'retry' and retries < cfg.limit and not stopped then
    retries = retries + 1
    local due = k.now + cfg.resting + (retries - 1) * cfg.backoff
    redis.call('HSET', jk, 'status', 'scheduled', 'sq_retries', retries, 'sq_due', tostring(due),
      'sq_claim', '', 'sq_last', tostring(k.now), 'sq_remark', remark)
    redis.call('HDEL', jk, 'sq_started', 'sq_outcome')
    redis.call('ZADD', k.retry, due, id)
    record_result(id, 'retry', remark, retries)
    touch(redis.call('HGET', jk, 'sq_batch'), 1)
    tally('retried', 1)
    return {id, 'retry', tostring(due), retries}, nil
  end
  if verdict == 'retry' and retries < cfg.limit then remark = STOPPED .. 'could be retried: ' .. remark end
  return {id, verdict == 'pass' and 'passed' or 'failed', '', retries}, end_task(id, verdict == 'pass', remark)
end

-- A task whose lease ran out (its worker is gone).  Its journal says what happened:
-- an outcome recorded under the current claim is settled as if reported; a task that
-- had started counts a worker death, and fails once it has killed max(retry_limit,
-- LOSS_FLOOR) workers; a task that never started is simply handed out again.
-- Returns again (true: hand it out), ended batch id or nil.
local function take_over(id, cfg)
  local jk = k.job_prefix .. id
  local f = redis.call('HMGET', jk, 'sq_claim', 'sq_started', 'sq_outcome', 'worker_name')
  local claim, started, journal, owner = f[1], f[2], f[3], f[4]
  if journal and claim and string.sub(journal, 1, #claim + 1) == claim .. '\31' then
    local rest = string.sub(journal, #claim + 2)
    local sep = string.find(rest, '\31', 1, true)
    if sep then
      local _, bid = settle_one(id, claim, string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1), cfg)
      return false, bid
    end
  end
  if started and started == claim then
    local lost = bump(jk, 'sq_lost')
    tally('lost', 1)
    if lost >= math.max(cfg.limit, LOSS_FLOOR) then
      unlease(id, claim)
      return false, end_task(id, false, 'NO_RETRY | worker died ' .. lost .. ' times running this task (last: '
        .. (owner or '?') .. ')')
    end
  end
  return true, nil
end
