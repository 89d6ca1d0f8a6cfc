local function ring(n)  -- wake up to n idle workers
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', k.bell, 'x') end
  redis.call('LTRIM', k.bell, 0, 63)
end
