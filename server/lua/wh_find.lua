-- wh_find.lua - store_conn.c's SC_WH_FIND: an event to send again
-- KEYS: whlog:<endpoint>
-- ARGV: prefix member event_id
-- The body of event_id for this endpoint: its queued delivery's
-- (wh:<member>) when one exists, else the newest attempt's in the log.
-- Returns {body, attempts, queued (1|0)} (attempts: the newest logged
-- attempt's number, 0 when none), or {} when neither has it.

local b = redis.call('HGET', ARGV[1] .. 'wh:' .. ARGV[2], 'body')
local q = 0
if b then q = 1 end
local att = 0
local es = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1000)
for _, e in ipairs(es) do
  local f = e[2]
  local m = {}
  for j = 1, #f, 2 do m[f[j]] = f[j + 1] end
  if m.e == ARGV[3] then
    if not b then b = m.b end
    att = tonumber(m.a) or 0
    break
  end
end
if not b then return {} end
return {b, att, q}
