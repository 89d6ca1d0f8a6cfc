-- The bell idle workers block on (BLPOP), so that new work wakes them instead of their next poll.
local function ring(n)  -- wake up to n idle workers
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', k.bell, 'x') end
  redis.call('LTRIM', k.bell, 0, 63)
end
