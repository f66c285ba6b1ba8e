-- tpl_del.lua - store_conn.c's SC_TPL_DEL
-- KEYS: tpl:<name>, tpls
-- ARGV: name
-- Returns 1, or 0 when absent.

local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
