-- ep_list.lua - store_conn.c's SC_EP_LIST
-- KEYS: wheps
-- ARGV: prefix max
-- Returns {{id, url, secret, created, {event, ...}, project, description,
-- disabled, disabled_reason, disabled_at, secret_old, old_until,
-- failing_since}, ...}, oldest first, of every project (project "default"
-- for an endpoint stored before projects; the fields after project are ""
-- or "0" when never set).

local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', ARGV[1] .. 'whep:' .. id, 'url', 'secret', 'events', 'created', 'project',
    'description', 'disabled', 'disabled_reason', 'disabled_at', 'secret_old', 'old_until', 'failing_since')
  if v[1] then
    local ok, ev = pcall(cjson.decode, v[3] or '[]')
    local evs = {}
    if ok and type(ev) == 'table' then
      for _, e in ipairs(ev) do
        if type(e) == 'string' then evs[#evs + 1] = e end
      end
    end
    out[#out + 1] = {id, v[1], v[2] or '', v[4] or '0', evs, v[5] or 'default', v[6] or '',
      v[7] or '0', v[8] or '', v[9] or '0', v[10] or '', v[11] or '0', v[12] or '0'}
  end
end
return out
