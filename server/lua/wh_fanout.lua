-- wh_fanout.lua - store_conn.c's SC_WH_FANOUT
-- KEYS: events, then whq:<ep> per endpoint
-- ARGV: entry_id event_id now_ms prefix body project, then endpoint ids
-- Creates wh:<event_id>/<ep> (unless it exists) due now in the endpoint's
-- own due set, for "default" and for endpoints that still exist (whep:)
-- and belong to the event's project (their "project" field; none:
-- "default"), so an endpoint never gets another project's event even when
-- the caller named it; acks the event entry (none when entry_id is "": on
-- a Cluster the caller acks it on its own partition's node after this),
-- which stays in the stream for live readers until trimmed. Returns the
-- number of deliveries that exist for the event.

local c = 0
for j = 7, #ARGV do
  local ep = ARGV[j]
  local ok = ep == 'default'
  if not ok then
    local v = redis.call('HMGET', ARGV[4] .. 'whep:' .. ep, 'url', 'project')
    ok = v[1] and (v[2] or 'default') == ARGV[6]
  end
  if ok then
    local m = ARGV[2] .. '/' .. ep
    local k = ARGV[4] .. 'wh:' .. m
    if redis.call('EXISTS', k) == 0 then
      redis.call('HSET', k, 'body', ARGV[5], 'attempts', '0', 'first', ARGV[3])
      redis.call('ZADD', KEYS[j - 5], ARGV[3], m)
    end
    c = c + 1
  end
end
if ARGV[1] ~= '' then redis.call('XACK', KEYS[1], 'webhooks', ARGV[1]) end
return c
