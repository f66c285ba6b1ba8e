-- wh_log.lua - store_conn.c's SC_WH_LOG: attempts for the deliveries logs
-- KEYS: whlog:<endpoint> of each item, in item order
-- ARGV: prefix maxlen, then 11 per item: endpoint event_id type attempt
--       status duration_ms response error next_ms at_ms body
-- Appends each attempt to its endpoint's log (a stream capped at maxlen
-- entries, newest last), for "default" and for endpoints that still exist
-- (whep:). Returns the number appended.

local c = 0
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 11
  local ep = ARGV[b]
  if ep == 'default' or redis.call('EXISTS', ARGV[1] .. 'whep:' .. ep) == 1 then
    redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[2], '*', 'e', ARGV[b + 1], 't', ARGV[b + 2],
      'a', ARGV[b + 3], 's', ARGV[b + 4], 'd', ARGV[b + 5], 'r', ARGV[b + 6], 'x', ARGV[b + 7],
      'n', ARGV[b + 8], 'at', ARGV[b + 9], 'b', ARGV[b + 10])
    c = c + 1
  end
end
return c
