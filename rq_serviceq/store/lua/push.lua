-- KEYS: state queue finalize bell batches rq_queues events totals
-- ARGV: job_prefix batch_prefix stamp finalize_lease
--- @include "groups_of"
--- @include "events"
--- @include "ring"
--- @include "open_batch"
--- @include "task_fields"
-- Write a chunk of tasks as RQ job hashes, open or join the active batch and queue
-- them, in one atomic step: a batch can never end between "joined" and "counted",
-- and a crash can never leave a job hash without its place in the queue.
-- ARGV[A] batch id to use if a new batch opens   ARGV[A+1] origin (the RQ queue name)
-- ARGV[A+2..] triples: task id, job data (RQ's serialized call, or a short task itself: task_fields.lua),
-- description ('' for none: RQ's readers then show the call itself)
-- Returns {batch_id, opened (0|1), now}, or {'', -1, now} when the service queue was deleted,
-- or an error, with nothing written, when what follows ARGV[A+1] is not triples
-- (a handle cached by a long-lived process must not recreate half of it).
-- The pusher runs the batch-begin callback; should it die first, a worker takes this over.
local refused = groups_of(3, A + 2)
if refused then return refused end
if redis.call('EXISTS', k.state) == 0 then return {'', -1, tostring(k.now)} end
local bid, opened = open_or_join(ARGV[A], k.now + k.finalize_lease)
local created = tostring(k.now)
local ids = {}
for i = A + 2, #ARGV, 3 do
  local jk = k.job_prefix .. ARGV[i]
  -- As few fields as RQ's readers need (docs/rq.md), every value within 64 bytes (task_fields.lua).
  local data = ARGV[i + 1]
  if bare_task(data) then  -- one piece, as given: no string to make, no table to build
    redis.call('HSET', jk, 'created_at', k.stamp, 'data', TASK_STUB, 'origin', ARGV[A + 1], 'status', 'queued',
      'sq_batch', bid, 'sq_task', data)
  else
    redis.call('HSET', jk, unpack(task_fields(data, {'created_at', k.stamp, 'origin', ARGV[A + 1],
      'status', 'queued', 'sq_batch', bid})))
  end
  if ARGV[i + 2] ~= '' then redis.call('HSET', jk, 'description', ARGV[i + 2]) end
  ids[#ids + 1] = ARGV[i]
end
for i = 1, #ids, 1000 do redis.call('RPUSH', k.queue, unpack(ids, i, math.min(i + 999, #ids))) end
count_in(bid, ids)
redis.call('SADD', k.rq_queues, k.queue)
ring(#ids)
progress()
return {bid, opened, created}
