-- How a task is kept in its job hash (rq_serviceq/task/stored.py says why).  PUSH is given RQ's call,
-- `data`, as RQ's JSONSerializer spells it: TASK_HEAD, the task's JSON, TASK_TAIL.  Where the task is at
-- most 512 bytes the hash keeps TASK_STUB (the call without its task) as `data`, and the task in fields
-- of at most 64 bytes (Redis' default hash-max-listpack-value), so that the hash keeps Redis' compact
-- encoding; ServiceQJob puts TASK_HEAD .. pieces .. TASK_TAIL back together, byte for byte what was
-- given.  Any other data (a longer task, zlib-compressed, spelled otherwise) is kept as it came.
local TASK_HEAD = '["rq_serviceq.job.perform_outside_serviceq_worker", null, ['
local TASK_TAIL = '], {}]'
local TASK_STUB = '["rq_serviceq.job.perform_outside_serviceq_worker",null,[],{}]'
local TASK_PIECES = {'sq_task', 'sq_task2', 'sq_task3', 'sq_task4', 'sq_task5', 'sq_task6', 'sq_task7', 'sq_task8'}
local TASK_PIECE_BYTES = 64

-- The task inside `data` when it is to be kept in pieces, or nil.
local function task_in(data)
  local n = #data - #TASK_HEAD - #TASK_TAIL
  if n < 0 or n > TASK_PIECE_BYTES * #TASK_PIECES then return nil end
  if string.sub(data, 1, #TASK_HEAD) ~= TASK_HEAD or string.sub(data, -#TASK_TAIL) ~= TASK_TAIL then return nil end
  return string.sub(data, #TASK_HEAD + 1, #TASK_HEAD + n)
end

-- Appends the field and value pairs that keep `data` (RQ's call, as PUSH was given it; `task`: what
-- task_in found in it) to `out`.
local function task_fields(data, task, out)
  if not task then
    out[#out + 1], out[#out + 2] = 'data', data
    return out
  end
  out[#out + 1], out[#out + 2] = 'data', TASK_STUB
  local n = math.max(1, math.ceil(#task / TASK_PIECE_BYTES))
  local size = math.ceil(#task / n)  -- even pieces: a task of 66 bytes is two of 33
  for p = 1, n do
    out[#out + 1], out[#out + 2] = TASK_PIECES[p], string.sub(task, (p - 1) * size + 1, p * size)
  end
  return out
end

-- Appends the fields that keep the task of job hash `jk` (as task_fields wrote them) to `out`.
local function task_copy(jk, out)
  local f = redis.call('HMGET', jk, 'data', unpack(TASK_PIECES))
  out[#out + 1], out[#out + 2] = 'data', f[1]
  for p = 1, #TASK_PIECES do
    if f[p + 1] then out[#out + 1], out[#out + 2] = TASK_PIECES[p], f[p + 1] end
  end
  return out
end
