-- wh_claim.lua - store_conn.c's SC_WH_CLAIM
-- KEYS: whq:<endpoint>
-- ARGV: now_ms lease_until_ms max prefix
-- Returns a flat list {member, body, attempts, first, ...}; each claimed
-- member's score moves to lease_until. Members without a hash are dropped.

local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],
  'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(items) do
  local v = redis.call('HMGET', ARGV[4] .. 'wh:' .. m, 'body', 'attempts', 'first')
  if v[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m)
    out[#out + 1] = m
    out[#out + 1] = v[1]
    out[#out + 1] = v[2] or '0'
    out[#out + 1] = v[3] or '0'
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
