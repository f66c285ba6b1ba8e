-- shape_rate.lua - store_shaping.c's SC_SHAPE_RATE: sending slots of TXMAIL_DOMAIN_RATE, shared by every worker
-- KEYS: shape:rate:<domain> ... (one per domain, lower-cased)
-- ARGV: k1 interval_us1 k2 interval_us2 ... (slots wanted, microseconds between two; one pair per key)
-- Each key holds the next free slot of its domain (microseconds, Redis
-- clock). A call books k consecutive slots per domain: the first is
-- max(now, next), next moves k intervals on; the key expires once next is
-- in the past (an idle domain leaves nothing behind). Slots never overlap
-- between callers, so all workers together send at most one message per
-- interval. The time is Redis's own (TIME), so workers whose clocks
-- disagree still agree on the slots: the one exception to "times come from
-- C" (README), and why the reply carries now for the caller to map the
-- slots onto its own clock. Numbers are written with %d: microsecond
-- times fit a Lua number exactly (< 2^53).
-- Returns {now_us, start_us1, start_us2, ...}.

if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {now}
for i, k in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i - 1])
  local iv = tonumber(ARGV[2 * i])
  local nx = tonumber(redis.call('GET', k) or '0') or 0
  local start = nx > now and nx or now
  nx = start + n * iv
  redis.call('SET', k, string.format('%d', nx), 'PX', string.format('%d', math.floor((nx - now) / 1000) + 1000))
  out[i + 1] = start
end
return out
