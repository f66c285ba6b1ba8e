-- key_revoke.lua - store_conn.c's SC_KEY_REVOKE
-- KEYS: keyname:<name>, keys
-- ARGV: name prefix
-- Deletes the key and its name. Returns 1, or 0 when absent. The rate
-- bucket rl:<project> is the project's, shared with its other keys: it is
-- kept (it expires by itself once full again).

local h = redis.call('GET', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if not h then return 0 end
redis.call('DEL', ARGV[2] .. 'key:' .. h, KEYS[1])
return 1
