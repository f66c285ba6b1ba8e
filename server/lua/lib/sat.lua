-- lib/sat.lua - not a script: the destinations a feeder found at their in-flight cap
-- (KEYS sat, a hash written by sat.lua: domain -> "until next step max min count", ms,
-- wall clock), included by the scripts that put a delivery for one in due instead of
-- a ready stream (enqueue, claim).
-- sat_parse(v, d): field value v of domain d as a table {u, n, s, m, mn, c, d}, or nil.
-- sat_slot(s, now, expires): when a delivery of s, met at now, comes back: its next
-- slot, no sooner than min after now; next moves on by step; a slot past max from now
-- is spread over max's second half (count steps the spread) and next goes to the
-- horizon (as server/fair.c parks); never past expires. Marks s to be written back.
-- sat_put(k, s): writes s back to hash k when sat_slot moved it.

local function sat_parse(v, d)
  local u, n, st, mx, mn, c = string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  if not u then return nil end
  return {u = tonumber(u), n = tonumber(n), s = tonumber(st), m = tonumber(mx),
          mn = tonumber(mn), c = tonumber(c), d = d}
end

local function sat_slot(s, now, expires)
  local at = now + s.mn
  if s.n > at then at = s.n end
  s.n = at + s.s
  if at > now + s.m then
    local half = math.floor(s.m / 2)
    s.c = s.c + 1
    if half > 0 then at = now + s.m - (s.c * 7919) % half else at = now + s.m end
    s.n = now + s.m
  end
  if at > expires then at = expires end
  s.dirty = true
  return at
end

local function sat_put(k, s)
  if s.dirty then
    redis.call('HSET', k, s.d, string.format('%d %d %d %d %d %d', s.u, s.n, s.s, s.m, s.mn, s.c))
    s.dirty = false
  end
end
