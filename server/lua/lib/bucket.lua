-- lib/bucket.lua - not a script: the token bucket, included by auth.lua and ratelimit.lua
-- The token bucket shared by auth and ratelimit: rl:<tenant> is a hash
-- {tokens, ts}; it refills at rate tokens/s up to burst, and expires once
-- it would be full again. Returns three integers: retry (0 when a token was
-- taken, else the ms until one is available), left (whole tokens left after
-- this request) and full (the ms until the bucket is full again; the
-- RateLimit-* headers). rate <= 0: no limit, nothing stored, 0, 0, 0.

local function bucket(k, now, rate, burst)
  if not rate or rate <= 0 then return 0, 0, 0 end
  if not burst or burst < 1 then burst = 1 end
  local v = redis.call('HMGET', k, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if not tokens or not ts then tokens = burst; ts = now end
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
    ts = now
  end
  local retry = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    retry = math.ceil((1 - tokens) * 1000 / rate)
    if retry < 1 then retry = 1 end
  end
  redis.call('HSET', k, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))
  redis.call('PEXPIRE', k, math.ceil(burst * 1000 / rate) + 1000)
  local left = math.floor(tokens)
  if left < 0 then left = 0 end
  return retry, left, math.ceil((burst - tokens) * 1000 / rate)
end
