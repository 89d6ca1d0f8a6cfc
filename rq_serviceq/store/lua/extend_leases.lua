-- KEYS: leases finalize
-- ARGV: lease
-- Keep a live worker's claims, and the batch work it is doing, from being taken
-- as lost.  Only entries still leased (XX) are touched, so nothing already
-- settled or finished is resurrected.
-- ARGV[A] how many task ids follow   ARGV[A+1..] task ids, then finalize-zset members
-- Returns how many entries it was given
local n = tonumber(ARGV[A])
for i = A + 1, #ARGV do
  redis.call('ZADD', i <= A + n and k.leases or k.finalize, 'XX', k.now + k.lease, ARGV[i])
end
return #ARGV - A
