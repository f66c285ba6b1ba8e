-- tpl_put.lua - store_conn.c's SC_TPL_PUT
-- KEYS: tpl:<name>, tpls
-- ARGV: name json now_ms
-- Returns 1 when the template is new, 0 when replaced (created is kept).

local new = redis.call('EXISTS', KEYS[1]) == 0
if new then redis.call('HSET', KEYS[1], 'created', ARGV[3]) end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'updated', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if new then return 1 end
return 0
