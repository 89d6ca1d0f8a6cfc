-- HINCRBY by 1 that a field damaged by hand cannot make fail half-way (Redis scripts are not rolled
-- back): a value that is no whole number from 0 to 2^53 counts as 0.  Returns the new value.
local function bump(key, field)
  local v = tonumber(redis.call('HGET', key, field) or '0')
  if not v or v ~= math.floor(v) or v < 0 or v >= 2 ^ 53 then v = 0 end
  redis.call('HSET', key, field, v + 1)
  return v + 1
end
