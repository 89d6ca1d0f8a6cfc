-- KEYS: state queue leases started finished failed finalize bell worker events totals
-- ARGV: job_prefix batch_prefix ttl stamp worker_name finalize_lease name results_prefix result_ttl
--- @include "groups_of"
--- @include "events"
--- @include "ring"
--- @include "unlease"
--- @include "batch_stopped"
--- @include "end_task"
-- Give claimed tasks that were never started back to the front of the queue
-- (a worker asked to stop or pause between tasks of a claimed group).  Tasks of
-- a stopped batch are failed instead.
-- ARGV[A..] pairs: task id, claim token.   Returns {ended batch ids}
local refused = groups_of(2, A)
if refused then return refused end
local ended = {}
for i = #ARGV - 1, A, -2 do
  local id, claim = ARGV[i], ARGV[i + 1]
  local jk = k.job_prefix .. id
  if redis.call('HGET', jk, 'sq_claim') == claim then
    unlease(id, claim)
    if batch_stopped(id) then
      local bid = end_task(id, false, STOPPED .. 'could run')
      if bid then ended[#ended + 1] = bid end
    else
      redis.call('HSET', jk, 'sq_claim', '-' .. claim, 'status', 'queued')  -- let go: '-' and the count of claims
      redis.call('LPUSH', k.queue, id)
    end
  end
end
ring(#ARGV - A)
progress()
return ended
