-- KEYS: state retry leases started finished failed finalize bell worker journal events totals rate
-- ARGV: job_prefix batch_prefix ttl stamp worker_name finalize_lease name results_prefix result_ttl retry_limit resting_period loop_backoff failure_ratio min_tasks consecutive_failures
--- @include "groups_of"
--- @include "events"
--- @include "ring"
--- @include "settle_one"
--- @include "breaker"
-- Record the outcome of attempts.  A passed or finally failed task moves to the
-- finished/failed registry and its batch ledger in one step; a retryable failure
-- is scheduled on the retry zset (unless its batch was stopped: then it fails).
-- The claim token fences out a worker that lost its lease: its late outcome is
-- ignored, so no task is counted twice.  Then the breaker (includes/breaker.lua) may
-- pause the service queue, in the same step as the outcomes that tripped it.
-- ARGV[A] journal entries to keep: 0 deletes the worker's journal (the group was all it held); N keeps its
-- last N, for a worker whose next group is already running and journaling (entries of settled tasks
-- left behind are inert: a takeover reads an entry only under the task's current claim token).
-- ARGV[A+1..] groups of 4: task id, claim token, verdict (pass|retry|fail, or retry:<s>|throttle:<s>), remark
-- Returns {now, {{id, result, due, retries}, ...}, {ended batch ids}, pause_gen (as stored),
--          the reason the breaker tripped for ('' when it did not)}
local refused = groups_of(4, A + 1)
if refused then return refused end
local keep = math.max(0, math.floor(tonumber(ARGV[A]) or 0))
local cfg = retry_config()
local results, ended = {}, {}
local rang = false
for i = A + 1, #ARGV, 4 do
  local row, bid, of = settle_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], cfg)
  results[#results + 1] = row
  if bid then ended[#ended + 1] = bid end
  breaker_note(row[2], of)
  if row[2] == 'retry' and not rang then ring(1) rang = true end
end
if keep == 0 then
  redis.call('DEL', k.journal)  -- the group is settled: its journal (worker/journal.py) has served
else
  redis.call('LTRIM', k.journal, -keep, -1)
end
progress()
local tripped = breaker_check()
return {tostring(k.now), results, ended, redis.call('HGET', k.state, 'pause_gen') or '0', tripped}
