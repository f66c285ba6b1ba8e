-- auth.lua - store_conn.c's SC_AUTH
-- KEYS: key:<hash>
-- ARGV: now_ms rate burst prefix
-- Returns nil when no such key, else {name, retry_after_ms}; last_used is
-- refreshed when older than a minute.

-- @include lib/bucket.lua
local v = redis.call('HMGET', KEYS[1], 'name', 'last_used')
if not v[1] then return false end
local now = tonumber(ARGV[1])
local lu = tonumber(v[2] or '0') or 0
if now - lu >= 60000 then redis.call('HSET', KEYS[1], 'last_used', ARGV[1]) end
local r = bucket(ARGV[4] .. 'rl:' .. v[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
return {v[1], r}
