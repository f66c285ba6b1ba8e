-- ep_rotate.lua - store_conn.c's SC_EP_ROTATE: POST /v1/webhooks/{id}/rotate
-- KEYS: whep:<id>
-- ARGV: project secret old_until_ms
-- A non-empty project must own the endpoint. The new secret replaces the
-- current one, which becomes secret_old (signing too until old_until_ms)
-- unless old_until_ms is "0" (no overlap: any previous secret_old goes).
-- Returns 1, or 0 when there is no such endpoint.

local v = redis.call('HMGET', KEYS[1], 'url', 'project', 'secret')
if not v[1] then return 0 end
if ARGV[1] ~= '' and (v[2] or 'default') ~= ARGV[1] then return 0 end
if ARGV[3] ~= '0' and v[3] then
  redis.call('HSET', KEYS[1], 'secret_old', v[3], 'old_until', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'secret_old', 'old_until')
end
redis.call('HSET', KEYS[1], 'secret', ARGV[2])
return 1
