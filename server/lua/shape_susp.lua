-- shape_susp.lua - store_shaping.c's SC_SHAPE_SUSP: destination suspensions shared by every worker
-- KEYS: shape:susp (hash: destination -> "<until_ms> <backoff_ms>", Redis clock)
-- ARGV: cap, then triples dest remaining_ms backoff_ms (remaining_ms 0: clear dest)
-- Applies the changes in order (a suspension: until = now + remaining_ms;
-- a clear: the field goes), drops suspensions that are over, then lists
-- the ones still running. A new destination is not added when the hash
-- already holds cap of them (the caller keeps its own). The time is
-- Redis's (TIME), like shape_rate.lua, so remaining times mean the same
-- to every worker whatever its clock.
-- Returns {now_ms, full (0|1), dest1, remaining_ms1, backoff_ms1, ...}.

if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = KEYS[1]
local cap = tonumber(ARGV[1])
local full = 0
local all = redis.call('HGETALL', k)
local n = 0
for i = 1, #all, 2 do
  local u = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
  if u <= now then redis.call('HDEL', k, all[i]) else n = n + 1 end
end
for i = 2, #ARGV, 3 do
  local d, rem, bo = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if rem <= 0 then
    n = n - redis.call('HDEL', k, d)
  elseif redis.call('HEXISTS', k, d) == 1 or n < cap then
    n = n + redis.call('HSET', k, d, string.format('%d %d', now + rem, bo))
  else
    full = 1
  end
end
if n >= cap then full = 1 end
local out = {now, full}
all = redis.call('HGETALL', k)
for i = 1, #all, 2 do
  local u, bo = string.match(all[i + 1], '^(%d+) (%d+)')
  u = tonumber(u) or 0
  if u > now then
    out[#out + 1] = all[i]
    out[#out + 1] = u - now
    out[#out + 1] = tonumber(bo) or 0
  end
end
return out
