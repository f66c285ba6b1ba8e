-- ep_delete.lua - store_conn.c's SC_EP_DELETE
-- KEYS: whep:<id>, wheps, whq:<id>
-- ARGV: id prefix project
-- Removes the endpoint, its due set and every delivery hash in it. A
-- non-empty project must own it ("project" field; none: "default").
-- Returns 1, or 0 when the endpoint does not exist or is another
-- project's (then nothing changes).

if ARGV[3] ~= '' then
  local v = redis.call('HMGET', KEYS[1], 'url', 'project')
  if not v[1] or (v[2] or 'default') ~= ARGV[3] then return 0 end
end
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
while true do
  local ms = redis.call('ZRANGE', KEYS[3], 0, 499)
  if #ms == 0 then break end
  for _, m in ipairs(ms) do redis.call('DEL', ARGV[2] .. 'wh:' .. m) end
  redis.call('ZREM', KEYS[3], unpack(ms))
end
return n
