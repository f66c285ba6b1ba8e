-- wh_settle.lua - store_conn.c's SC_WH_SETTLE: the dispatcher's batch step
-- KEYS: events, then whq:<endpoint> of each item, in item order
-- ARGV: prefix nitems, then 7 per item: member endpoint project body
--       attempts first_ms due_ms; then the outbox entry ids to XACK
-- Parks deliveries in their endpoints' due sets - an event for an endpoint
-- the dispatcher did not send to at once, or a direct attempt that failed
-- (attempts made, due at its retry time) - creating wh:<member> unless it
-- exists (a re-run never resets a delivery), for "default" and for
-- endpoints that still exist (whep:) and belong to the item's project, as
-- wh_fanout does; then acks the given outbox entries (each only once all
-- its endpoints have either received it or hold it in their queue).
-- Returns the number of deliveries created.

local n = tonumber(ARGV[2])
local c = 0
for i = 0, n - 1 do
  local b = 3 + i * 7
  local m, ep = ARGV[b], ARGV[b + 1]
  local ok = ep == 'default'
  if not ok then
    local v = redis.call('HMGET', ARGV[1] .. 'whep:' .. ep, 'url', 'project')
    ok = v[1] and (v[2] or 'default') == ARGV[b + 2]
  end
  if ok then
    local k = ARGV[1] .. 'wh:' .. m
    if redis.call('EXISTS', k) == 0 then
      redis.call('HSET', k, 'body', ARGV[b + 3], 'attempts', ARGV[b + 4], 'first', ARGV[b + 5])
      redis.call('ZADD', KEYS[2 + i], ARGV[b + 6], m)
      c = c + 1
    end
  end
end
local a = 3 + n * 7
if a <= #ARGV then
  redis.call('XACK', KEYS[1], 'webhooks', unpack(ARGV, a))
end
return c
