-- key_revoke.lua - store_conn.c's SC_KEY_REVOKE
-- KEYS: keyname:<name>, keys
-- ARGV: name prefix
-- Deletes the key, its name and its rate bucket. Returns 1, or 0 when absent.

local h = redis.call('GET', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if not h then return 0 end
redis.call('DEL', ARGV[2] .. 'key:' .. h, KEYS[1], ARGV[2] .. 'rl:' .. ARGV[1])
return 1
