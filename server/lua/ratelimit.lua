-- ratelimit.lua - store_conn.c's SC_RATELIMIT
-- KEYS: rl:<tenant>
-- ARGV: now_ms rate burst
-- Returns retry_after_ms (0: allowed).

-- @include lib/bucket.lua
return bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
