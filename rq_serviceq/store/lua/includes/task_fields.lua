-- How a task is kept in its job hash (rq_serviceq/task/stored.py says why): where the task is at most
-- 512 bytes of JSON, `data` is TASK_STUB (RQ's call without its task) and the task's JSON sits in
-- fields of at most 64 bytes, TASK_PIECES (Redis' default hash-max-listpack-value), so that the hash
-- keeps Redis' compact encoding; ServiceQJob puts TASK_HEAD .. pieces .. TASK_TAIL back together.
--
-- PUSH is given a task's data as RQ's call (a JSON list, TASK_HEAD .. task .. TASK_TAIL where RQ's
-- JSONSerializer spells it, so cut into pieces here; or zlib-compressed, or spelled otherwise: kept as
-- it came), or, for a task of at most 64 bytes of JSON that is an object, a string, true, false or null,
-- as the task's JSON itself (what rq-serviceq's own push sends: cutting the call here cost a fifth more
-- of Redis' push work).  Such a task begins with one of `{ " t f n`, and neither an RQ call (a JSON
-- list) nor a zlib stream (whose first byte is one of `\b \x18 ( 8 H X h x`) does.
local TASK_HEAD = '["rq_serviceq.job.perform_outside_serviceq_worker", null, ['
local TASK_TAIL = '], {}]'
local TASK_STUB = '["rq_serviceq.job.perform_outside_serviceq_worker",null,[],{}]'
local TASK_PIECES = {'sq_task', 'sq_task2', 'sq_task3', 'sq_task4', 'sq_task5', 'sq_task6', 'sq_task7', 'sq_task8'}
local TASK_PIECE_BYTES = 64
local TASK_MOST = TASK_PIECE_BYTES * #TASK_PIECES
local find, sub, byte = string.find, string.sub, string.byte  -- locals: a global's lookup is slow here
local BARE = {}  -- the first bytes of a bare task
for _, c in ipairs({'{', '"', 't', 'f', 'n'}) do BARE[byte(c)] = true end

-- Whether `data` is a task's JSON itself, to be kept as the one piece it is.
local function bare_task(data)
  return #data <= TASK_PIECE_BYTES and BARE[byte(data, 1) or 0] == true
end

-- The task inside RQ's call `data` when it is to be kept in pieces, or nil.  Found, not cut out and
-- compared: a string made is some 0.2 us of Redis.
local function task_in(data)
  local n = #data - #TASK_HEAD - #TASK_TAIL
  if n < 0 or n > TASK_MOST then return nil end
  if find(data, TASK_HEAD, 1, true) ~= 1 or not find(data, TASK_TAIL, -#TASK_TAIL, true) then return nil end
  return sub(data, #TASK_HEAD + 1, #TASK_HEAD + n)
end

-- Appends the field and value pairs that keep RQ's call `data` to `out`.
local function task_fields(data, out)
  local task = task_in(data)
  if not task then
    out[#out + 1], out[#out + 2] = 'data', data
    return out
  end
  out[#out + 1], out[#out + 2] = 'data', TASK_STUB
  local n = math.max(1, math.ceil(#task / TASK_PIECE_BYTES))
  local size = math.ceil(#task / n)  -- even pieces: a task of 66 bytes is two of 33
  for p = 1, n do
    out[#out + 1], out[#out + 2] = TASK_PIECES[p], sub(task, (p - 1) * size + 1, p * size)
  end
  return out
end

-- Appends the fields that keep the task of job hash `jk` to `out`.
local function task_copy(jk, out)
  local f = redis.call('HMGET', jk, 'data', unpack(TASK_PIECES))
  out[#out + 1], out[#out + 2] = 'data', f[1]
  for p = 1, #TASK_PIECES do
    if f[p + 1] then out[#out + 1], out[#out + 2] = TASK_PIECES[p], f[p + 1] end
  end
  return out
end
