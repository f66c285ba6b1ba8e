-- wh_retry.lua - store_conn.c's SC_WH_RETRY
-- KEYS: whq:<endpoint>
-- ARGV: member attempts next_ms prefix
-- Returns 1, or 0 when the delivery does not exist (then nothing changes).

local k = ARGV[4] .. 'wh:' .. ARGV[1]
if redis.call('EXISTS', k) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', k, 'attempts', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
