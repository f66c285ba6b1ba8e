-- view.lua - store_conn.c's SC_VIEW
-- KEYS: msg
-- Returns the message hash without the MIME body, as HGETALL would
-- ({field, value, ...}, with "project" when set); {} when the message does
-- not exist. It ends with "content", "1" while the MIME is still stored
-- (the key "<msg>:mime", or the hash's "mime" field for a message stored by
-- an earlier release), "0" once it is deleted (lib/content.lua). "tl" is
-- the timeline of a finished message, folded into the hash (entries joined
-- by "\n"); before that the caller reads the list msg:<id>:tl.

local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '-1')
if not n or n < 0 then return {} end
if n > 1000 then return redis.error_reply('ERR recipient count') end
local f = {'id', 'from', 'subject', 'metadata', 'tags', 'created', 'send_at', 'n', 'prio', 'project', 'tl'}
local names = {'email', 'kind', 'status', 'attempts', 'smtp', 'lat', 'dat', 'nxt'}
for i = 0, n - 1 do
  for _, x in ipairs(names) do f[#f + 1] = 'r' .. i .. ':' .. x end
end
local v = redis.call('HMGET', KEYS[1], unpack(f))
local out = {}
for i = 1, #f do
  if v[i] then out[#out + 1] = f[i]; out[#out + 1] = v[i] end
end
local c = redis.call('EXISTS', KEYS[1] .. ':mime') + redis.call('HEXISTS', KEYS[1], 'mime')
out[#out + 1] = 'content'; out[#out + 1] = tostring(math.min(c, 1))
return out
