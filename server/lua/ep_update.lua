-- ep_update.lua - store_conn.c's SC_EP_UPDATE: PATCH /v1/webhooks/{id}
-- KEYS: whep:<id>, whq:<id>
-- ARGV: prefix project set_url url set_desc desc enabled reason now_ms
--       keep_after_ms set_events, then the event types
-- A non-empty project must own the endpoint. set_* "1" replaces that field;
-- enabled "-1" leaves it, "0" disables (with reason, at now_ms) unless it
-- is disabled already, "1" enables a disabled one: its failure run is
-- forgotten and every delivery kept in its queue is due at now_ms (the
-- replay), but those first recorded before keep_after_ms (older than the
-- retention) are dropped. Returns 1, or 0 when there is no such endpoint
-- (then nothing changes).

local v = redis.call('HMGET', KEYS[1], 'url', 'project', 'disabled')
if not v[1] then return 0 end
if ARGV[2] ~= '' and (v[2] or 'default') ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'url', ARGV[4]) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'description', ARGV[6]) end
if ARGV[11] == '1' then
  local ev = {}
  for j = 12, #ARGV do ev[#ev + 1] = cjson.encode(ARGV[j]) end
  redis.call('HSET', KEYS[1], 'events', '[' .. table.concat(ev, ',') .. ']')
end
if ARGV[7] == '0' and v[3] ~= '1' then
  redis.call('HSET', KEYS[1], 'disabled', '1', 'disabled_reason', ARGV[8], 'disabled_at', ARGV[9])
elseif ARGV[7] == '1' and v[3] == '1' then
  redis.call('HDEL', KEYS[1], 'disabled', 'disabled_reason', 'disabled_at', 'failing_since')
  local keep = tonumber(ARGV[10])
  local ms = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, m in ipairs(ms) do
    local k = ARGV[1] .. 'wh:' .. m
    local f = tonumber(redis.call('HGET', k, 'first') or '0') or 0
    if f < keep then
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[2], m)
    else
      redis.call('ZADD', KEYS[2], 'XX', ARGV[9], m)
    end
  end
end
return 1
