-- auth.lua - store_conn.c's SC_AUTH
-- KEYS: key:<hash>
-- ARGV: now_ms rate burst prefix charge
-- Returns nil when no such key, else {name, project, scope, allow,
-- retry_after_ms, tokens left, ms until full} (the last two of the bucket,
-- lib/bucket.lua; 0 when nothing was charged). A key written before projects has no project, scope or
-- allow field: it reads as project = its name, scope "full", allow "".
-- charge "1": last_used is refreshed (when older than a minute) and one
-- token is taken from the project's bucket rl:<project>. charge "0": the
-- same, unless the key has an allowlist: then nothing is written and
-- retry_after_ms is -1 (the caller checks the address first and calls
-- again with "1", so a refused address never drains the project's bucket).

-- @include lib/bucket.lua
local v = redis.call('HMGET', KEYS[1], 'name', 'last_used', 'project', 'scope', 'allow')
if not v[1] then return false end
local project = v[3] or v[1]
local scope = v[4] or 'full'
local allow = v[5] or ''
if ARGV[5] ~= '1' and allow ~= '' then return {v[1], project, scope, allow, -1, 0, 0} end
local now = tonumber(ARGV[1])
local lu = tonumber(v[2] or '0') or 0
if now - lu >= 60000 then redis.call('HSET', KEYS[1], 'last_used', ARGV[1]) end
local r, left, full = bucket(ARGV[4] .. 'rl:' .. project, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
return {v[1], project, scope, allow, r, left, full}
