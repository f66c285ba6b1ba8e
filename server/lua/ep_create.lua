-- ep_create.lua - store_conn.c's SC_EP_CREATE
-- KEYS: whep:<id>, wheps
-- ARGV: id url secret created project description, then event types
-- Returns 1, or 0 when the id exists.

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ev = {}
for j = 7, #ARGV do ev[#ev + 1] = cjson.encode(ARGV[j]) end
redis.call('HSET', KEYS[1], 'url', ARGV[2], 'secret', ARGV[3],
  'events', '[' .. table.concat(ev, ',') .. ']', 'created', ARGV[4], 'project', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'description', ARGV[6]) end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
