-- sat.lua - store_shaping.c's SC_SAT: a feeder publishes the destinations at their in-flight cap
-- KEYS: sat (hash: domain -> "until next step max min count", ms, wall clock; read by enqueue.lua)
-- ARGV: cap now, then per domain six: domain until next step max min
-- For each domain (lower-cased) its field is written with the given until,
-- step, max and min; while the field's own until is after now, with the
-- later of the given next and the field's (enqueue.lua and claim.lua move
-- next on as they put recipients in due at their slots, so the feeder parks
-- after them) and the field's count (it spreads their slots past max); a
-- field whose until has passed (run out, or cleared: until = now) starts
-- again from the given next. Before that, when the hash holds cap fields
-- or more, the fields whose until is more than 10 minutes before now go;
-- a new domain is not added while it is still that full, nor by a clear.
-- Returns the next slot of each domain, in order.

local k = KEYS[1]
local cap, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('HLEN', k)
if n >= cap then
  local old = now - 600000
  local all = redis.call('HGETALL', k)
  for i = 1, #all, 2 do
    local u = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
    if u < old then n = n - redis.call('HDEL', k, all[i]) end
  end
end
local out = {}
for i = 3, #ARGV, 6 do
  local d, nx, c = ARGV[i], tonumber(ARGV[i + 2]), 0
  local cur = redis.call('HGET', k, d)
  if cur then
    local cu, cn, cc = string.match(cur, '^(%d+) (%d+) %d+ %d+ %d+ (%d+)$')
    if cu and tonumber(cu) > now then
      if tonumber(cn) > nx then nx = tonumber(cn) end
      c = tonumber(cc)
    end
  end
  -- a clear (until not after now) of a domain without a field writes nothing
  if cur or (n < cap and tonumber(ARGV[i + 1]) > now) then
    if not cur then n = n + 1 end
    redis.call('HSET', k, d, string.format('%s %d %s %s %s %d', ARGV[i + 1], nx, ARGV[i + 3],
      ARGV[i + 4], ARGV[i + 5], c))
  end
  out[#out + 1] = string.format('%d', nx)
end
return out
