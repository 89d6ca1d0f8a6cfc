-- KEYS: leases finalize
-- ARGV: lease
-- Keep a live worker's claims, and the batch work it is doing, from being taken
-- as lost.  Only entries still leased (XX) are touched, so nothing already
-- settled or finished is resurrected.
-- ARGV[A] how many task ids follow   ARGV[A+1..] task ids, then finalize-zset members
-- Returns how many entries it was given
local n = tonumber(ARGV[A])
-- Leases end on a whole second (rounded up, so never sooner than asked): a small zset (a listpack) of
-- integer scores is scanned without parsing each score as a float at every insert (235 -> 109 us a call).
local until_ = math.ceil(k.now + k.lease)
local function extend(key, from, to)  -- one ZADD per 1,000 entries (Lua's unpack has a stack limit)
  for i = from, to, 1000 do
    local args = {}
    for j = i, math.min(i + 999, to) do
      args[#args + 1] = until_
      args[#args + 1] = ARGV[j]
    end
    redis.call('ZADD', key, 'XX', unpack(args))
  end
end
extend(k.leases, A + 1, A + n)
extend(k.finalize, A + n + 1, #ARGV)
return #ARGV - A
