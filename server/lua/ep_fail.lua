-- ep_fail.lua - store_conn.c's SC_EP_FAIL: the dispatcher saw an attempt fail
-- KEYS: whfail, whep:<id>
-- ARGV: id text now_ms disable_after_ms reason
-- Records the endpoint's last failure ("<now_ms> <text>" in whfail); for an
-- endpoint of the store (not "default") the start of its failure run
-- (failing_since, kept while it fails), and when that run has lasted
-- disable_after_ms (> 0) disables it with reason. Returns 2 when this call
-- disabled it, 1 for an endpoint of the store, 0 otherwise.

redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSETNX', KEYS[2], 'failing_since', ARGV[3])
local v = redis.call('HMGET', KEYS[2], 'failing_since', 'disabled')
local after = tonumber(ARGV[4])
if after > 0 and v[2] ~= '1' and tonumber(ARGV[3]) - (tonumber(v[1]) or 0) >= after then
  redis.call('HSET', KEYS[2], 'disabled', '1', 'disabled_reason', ARGV[5], 'disabled_at', ARGV[3])
  return 2
end
return 1
