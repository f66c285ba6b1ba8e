-- wh_fanout.lua - store_conn.c's SC_WH_FANOUT
-- KEYS: events, then whq:<ep> per endpoint
-- ARGV: entry_id event_id now_ms prefix body, then endpoint ids
-- Creates wh:<event_id>/<ep> (unless it exists) due now in the endpoint's
-- own due set, for "default" and for endpoints that still exist (whep:);
-- acks the event entry, which stays in the stream for live readers until
-- trimmed. Returns the number of deliveries that exist for the event.

local c = 0
for j = 6, #ARGV do
  local ep = ARGV[j]
  if ep == 'default' or redis.call('EXISTS', ARGV[4] .. 'whep:' .. ep) == 1 then
    local m = ARGV[2] .. '/' .. ep
    local k = ARGV[4] .. 'wh:' .. m
    if redis.call('EXISTS', k) == 0 then
      redis.call('HSET', k, 'body', ARGV[5], 'attempts', '0', 'first', ARGV[3])
      redis.call('ZADD', KEYS[j - 4], ARGV[3], m)
    end
    c = c + 1
  end
end
redis.call('XACK', KEYS[1], 'webhooks', ARGV[1])
return c
