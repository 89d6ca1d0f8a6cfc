-- What RQ 2's own readers look for (job.latest_result(), job.return_value(), rq-dashboard's job
-- page): a Result entry per attempt's outcome in the job's result stream, and the ServiceQ fields
-- in the job's meta.  RQ stores a result's return value as base64 of the job serializer's JSON
-- and its exception text as base64 of zlib; Lua has neither, so the two are built here: zlib
-- as one uncompressed ("stored") deflate block, which every inflater reads.
local B64 = {}
for i = 0, 63 do
  B64[i] = string.sub('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', i + 1, i + 1)
end
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = B64[math.floor(n / 262144)] .. B64[math.floor(n / 4096) % 64]
      .. (b and B64[math.floor(n / 64) % 64] or '=') .. (c and B64[n % 64] or '=')
  end
  return table.concat(out)
end

local function zlib_stored(s)
  s = string.sub(s, 1, 65535)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + string.byte(s, i)) % 65521
    b = (b + a) % 65521
  end
  local len, nlen = #s, 65535 - #s
  return string.char(0x78, 0x01, 0x01, len % 256, math.floor(len / 256), nlen % 256, math.floor(nlen / 256))
    .. s .. string.char(math.floor(b / 256), b % 256, math.floor(a / 256), a % 256)
end

local RESULT_TYPE = {passed = 1, failed = 2, retry = 4}  -- RQ's Result.Type: SUCCESSFUL, FAILED, RETRIED

local encoded = {}  -- outcome .. remark -> the Result field's value: a group's remarks are mostly alike

local function result_value(outcome, remark)
  local key = outcome .. remark
  if not encoded[key] then
    encoded[key] = outcome == 'passed' and b64(cjson.encode(remark)) or b64(zlib_stored(remark))
  end
  return encoded[key]
end
