-- A claim let go: its lease (lost-task detection) and its entry in RQ's started registry.
local function unlease(id, claim)
  redis.call('ZREM', k.leases, id)
  if claim and claim ~= '' then redis.call('ZREM', k.started, id .. ':' .. claim) end
end
