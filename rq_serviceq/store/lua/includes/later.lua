-- Writes gathered while a script runs and sent as one variadic command per key and kind at the end
-- (flush(), called by progress() before it writes the progress events): ZADD, ZREM, SREM and RPUSH of
-- a whole group cost one command each, not one per task.  Only writes whose order against the script's
-- own reads does not matter are deferred: a member added or removed here is not read back by the same
-- script before flush() (the scripts that read a deferred key mid-way call flush() first).
local later = {zadd = {}, zrem = {}, srem = {}, rpush = {}, hincr = {}}
local later_keys = {}  -- {kind, key}, in the order first met, so that flushing is deterministic

local OPPOSITE = {zadd = 'zrem', zrem = 'zadd'}
local flush

local function defer(kind, key, a, b)  -- b: a ZADD's member (a is its score); else a is the value
  local other = OPPOSITE[kind]
  if other and later[other][key] then flush() end  -- a member added then removed (or back) keeps its order
  local list = later[kind][key]
  if not list then
    list = {}
    later[kind][key] = list
    later_keys[#later_keys + 1] = {kind, key}
  end
  list[#list + 1] = a
  if b ~= nil then list[#list + 1] = b end
end

local function later_hincr(key, field, n)
  local per = later.hincr
  if not per[key] then
    per[key] = {}
    later_keys[#later_keys + 1] = {'hincr', key}
  end
  per[key][field] = (per[key][field] or 0) + n
end

local CHUNK = 1000  -- members per command: Lua's unpack has a stack limit
local COMMAND = {zadd = 'ZADD', zrem = 'ZREM', srem = 'SREM', rpush = 'RPUSH'}

flush = function()
  for _, kk in ipairs(later_keys) do
    local kind, key = kk[1], kk[2]
    local values = later[kind][key]
    if kind == 'hincr' then
      for field, n in pairs(values) do
        if n ~= 0 then redis.call('HINCRBY', key, field, n) end
      end
    else
      local step = kind == 'zadd' and 2 * CHUNK or CHUNK
      for i = 1, #values, step do
        redis.call(COMMAND[kind], key, unpack(values, i, math.min(i + step - 1, #values)))
      end
    end
  end
  later, later_keys = {zadd = {}, zrem = {}, srem = {}, rpush = {}, hincr = {}}, {}
end
