--- @include "later"

-- A claim let go: its lease (lost-task detection) and its entry in RQ's started registry (sent at flush()).
local function unlease(id, claim)
  defer('zrem', k.leases, id)
  if claim and claim ~= '' then defer('zrem', k.started, id .. ':' .. claim) end
end
