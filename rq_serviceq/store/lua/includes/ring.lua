-- The bell idle workers block on (BLPOP), so that new work wakes them instead of their next poll.
local function ring(n)  -- wake up to n idle workers: one RPUSH of n rings, the bell kept at 64
  local rings = {}
  for i = 1, math.min(n, 64) do rings[i] = 'x' end
  if #rings == 0 then return end
  redis.call('RPUSH', k.bell, unpack(rings))
  redis.call('LTRIM', k.bell, 0, 63)
end
