-- A script's own arguments come in groups of `size` from ARGV[first]: checked before anything is
-- written, so that a caller that sends a short group (a producer in another language) changes nothing.
local function groups_of(size, first)
  if (#ARGV - first + 1) % size ~= 0 then
    return redis.error_reply('expected groups of ' .. size .. ' arguments from ARGV[' .. first .. '], got '
      .. (#ARGV - first + 1))
  end
  return nil
end
