-- KEYS: state queue retry leases started finished failed finalize bell worker events totals
-- ARGV: job_prefix batch_prefix ttl stamp worker_name finalize_lease name results_prefix result_ttl
--- @include "events"
--- @include "unlease"
--- @include "batch_stopped"
--- @include "queued_kind"
--- @include "end_batch"
--- @include "end_task"
-- Fail up to ARGV[A+2] tasks of stopped batch ARGV[A] that are not running: first
-- from the queue's head (a stopped batch's tasks come before any newer batch's),
-- then through the batch's open tasks (waiting retries, tasks whose worker was
-- lost, tasks removed by RQ's tools).  Running tasks finish and are counted.
-- ARGV[A+1] cursor: 'q' to start, then what the last call returned.
-- Returns {next cursor ('done' after a whole pass), ended batch id or ''}
local bid, cursor, n = ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2])
local bk = k.batch_prefix .. bid
local ended = ''
local function fail(id, why) ended = end_task(id, false, STOPPED .. why) or ended end

if cursor == 'q' then
  local popped = redis.call('LPOP', k.queue, n) or {}
  for i, id in ipairs(popped) do
    local kind = queued_kind(id)  -- a leftover id (see queued_kind) is dropped
    if kind == 'requeued' or (kind == 'task' and not batch_stopped(id)) then  -- a newer batch begins here
      for j = #popped, i, -1 do redis.call('LPUSH', k.queue, popped[j]) end  -- put back as it was
      progress()
      return {'0', ended}
    end
    if kind == 'foreign' then refuse_foreign(id) elseif kind then fail(id, 'could run') end
  end
  progress()
  return {#popped < n and '0' or 'q', ended}
end

local scan = redis.call('SSCAN', bk .. ':open', cursor, 'COUNT', n)
for _, id in ipairs(scan[2]) do
  local lease = redis.call('ZSCORE', k.leases, id)
  if redis.call('ZREM', k.retry, id) == 1 then
    fail(id, 'could be retried')
  elseif lease and tonumber(lease) <= k.now then
    unlease(id, redis.call('HGET', k.job_prefix .. id, 'sq_claim'))
    fail(id, 'could finish (its worker was lost)')
  elseif not lease then
    if redis.call('EXISTS', k.job_prefix .. id) == 0 then redis.call('HSET', k.job_prefix .. id, 'sq_batch', bid) end
    fail(id, 'could run')
  end
end
if scan[1] ~= '0' then
  progress()
  return {scan[1], ended}
end
flush()  -- the ledger's pending count as this call left it
if tonumber(redis.call('HGET', bk, 'pending') or '0') <= 0 then  -- nothing was left to fail and nothing runs
  ended = end_batch(bid) or ended  -- end it here (a hold on it does not outlast a stop)
end
progress()
return {'done', ended}
