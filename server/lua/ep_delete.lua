-- ep_delete.lua - store_conn.c's SC_EP_DELETE
-- KEYS: whep:<id>, wheps, whq:<id>
-- ARGV: id prefix
-- Removes the endpoint, its due set and every delivery hash in it.
-- Returns 1, or 0 when the endpoint does not exist.

local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
while true do
  local ms = redis.call('ZRANGE', KEYS[3], 0, 499)
  if #ms == 0 then break end
  for _, m in ipairs(ms) do redis.call('DEL', ARGV[2] .. 'wh:' .. m) end
  redis.call('ZREM', KEYS[3], unpack(ms))
end
return n
