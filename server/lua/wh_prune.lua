-- wh_prune.lua - store_conn.c's SC_WH_PRUNE: a disabled endpoint's retention
-- KEYS: whq:<endpoint>
-- ARGV: prefix cutoff_ms max
-- Drops up to max deliveries of the endpoint's queue due before cutoff_ms
-- whose first recording (wh:<member> "first") is before cutoff_ms too:
-- kept longer than the retention (TXMAIL_WEBHOOK_MAX_AGE) while the
-- endpoint was disabled. A member without its hash goes as well. Returns
-- the number dropped.

local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local c = 0
for _, m in ipairs(ms) do
  local k = ARGV[1] .. 'wh:' .. m
  local f = redis.call('HGET', k, 'first')
  if not f or (tonumber(f) or 0) < tonumber(ARGV[2]) then
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[1], m)
    c = c + 1
  end
end
return c
