-- wh_done.lua - store_conn.c's SC_WH_DONE
-- KEYS: whq:<endpoint>
-- ARGV: member prefix
-- Returns 1 when the delivery existed, else 0.

local a = redis.call('ZREM', KEYS[1], ARGV[1])
local b = redis.call('DEL', ARGV[2] .. 'wh:' .. ARGV[1])
if a + b > 0 then return 1 end
return 0
