-- ratelimit.lua - store_conn.c's SC_RATELIMIT
-- KEYS: rl:<tenant>
-- ARGV: now_ms rate burst
-- Returns {retry_after_ms (0: allowed), tokens left, ms until full}.

-- @include lib/bucket.lua
local r, left, full = bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return {r, left, full}
