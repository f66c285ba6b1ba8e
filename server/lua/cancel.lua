-- cancel.lua - store_conn.c's SC_CANCEL
-- KEYS: msg, tl, due
-- ARGV: id timeline retention_ms project content_ms
-- A non-empty project must own the message ("project" field; none:
-- "default"), else it is answered as missing (-1): nothing changes.
-- Recipients queued, scheduled or deferred become "canceled" (their ready
-- entries, on either lane, are dropped by claim; their due members here). Returns how many,
-- or -1 when the message does not exist. When no recipient is left pending
-- the content goes (lib/content.lua: deleted, or kept content_ms more).
-- The message is in the "s:canceled" search run (lib/msgix.lua).

-- @include lib/content.lua
-- @include lib/msgix.lua

local h = redis.call('HMGET', KEYS[1], 'n', 'project')
local n = tonumber(h[1] or '-1')
if not n or n < 0 then return -1 end
if ARGV[4] ~= '' and ARGV[4] ~= (h[2] or 'default') then return -1 end
local c = 0
for i = 0, n - 1 do
  local f = 'r' .. i .. ':status'
  local st = redis.call('HGET', KEYS[1], f)
  if st == 'queued' or st == 'scheduled' or st == 'deferred' then
    redis.call('HSET', KEYS[1], f, 'canceled')
    redis.call('ZREM', KEYS[3], ARGV[1] .. '/' .. i)
    c = c + 1
  end
end
if c > 0 then
  msgix_status(KEYS[1], h[2], 'canceled')
  if ARGV[2] ~= '' then tl_append(KEYS[1], KEYS[2], ARGV[2]) end
  local left = redis.call('HINCRBY', KEYS[1], 'pending', -c)
  if left <= 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    content_done(KEYS[1], KEYS[2], ARGV[5])
  end
end
return c
