-- hand_back.lua - store_conn.c's SC_HAND_BACK (shutdown: a delivery goes back without an outcome)
-- KEYS: msg, the entry's ready stream (its lane's, of its project), due
-- ARGV: entry_id idx attempt counted consumer msg_id until_ms
-- Only while the entry is still pending with consumer. attempt "0": an
-- entry read but never claimed (store_fetch's carry): one whose recipient
-- is "queued" goes back; "sending" is left alone (reclaimed as usual).
-- Otherwise the recipient must be "sending" with that attempt number: it
-- becomes "queued" again, with attempts - 1 unless counted is "1" (the
-- attempt had begun). Either way the entry is acked and deleted and,
-- when the recipient went back, a new entry {m, r} is added to the same
-- stream, so the next fetch of any worker takes it at once - or, with
-- until_ms other than "0" (parked: its destination is at its in-flight
-- cap, server/fair.h), the recipient stays "queued" and waits in due
-- (member <msg_id>/<idx>, score until_ms) until promote.lua puts it back.
-- Returns 1 handed back; 0 entry acked, recipient had moved on (recorded,
-- canceled); -1 nothing touched (not ours any more, or reclaimed since).

if #redis.call('XPENDING', KEYS[2], 'workers', ARGV[1], ARGV[1], 1, ARGV[5]) == 0 then
  return -1
end
local p = 'r' .. ARGV[2] .. ':'
local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'attempts')
local back = false
if ARGV[3] == '0' then
  if v[1] == 'sending' then return -1 end
  back = v[1] == 'queued'
elseif v[1] == 'sending' then
  if v[2] ~= ARGV[3] then return -1 end
  redis.call('HSET', KEYS[1], p .. 'status', 'queued')
  if ARGV[4] ~= '1' and tonumber(v[2]) > 0 then
    redis.call('HINCRBY', KEYS[1], p .. 'attempts', -1)
  end
  back = true
end
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
if not back then return 0 end
if ARGV[7] ~= '0' then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6] .. '/' .. ARGV[2])
  return 1
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[6], 'r', ARGV[2])
return 1
