-- HINCRBY by 1 that a field damaged by hand cannot make fail half-way (Redis scripts are not rolled
-- back): a value that is no whole number from 0 to 2^53 counts as 0.  Returns the new value.
local function counter(raw)
  local v = tonumber(raw or '0')
  if not v or v ~= math.floor(v) or v < 0 or v >= 2 ^ 53 then v = 0 end
  return v
end

local function bump(key, field)
  local v = counter(redis.call('HGET', key, field)) + 1
  redis.call('HSET', key, field, v)
  return v
end
