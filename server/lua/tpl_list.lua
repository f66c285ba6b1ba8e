-- tpl_list.lua - store_conn.c's SC_TPL_LIST
-- KEYS: tpls (all scores 0, so ZRANGE is sorted by name)
-- ARGV: prefix max
-- Returns a flat list {name, json, created, updated, ...}.

local names = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, n in ipairs(names) do
  local v = redis.call('HMGET', ARGV[1] .. 'tpl:' .. n, 'json', 'created', 'updated')
  if v[1] then
    out[#out + 1] = n; out[#out + 1] = v[1]
    out[#out + 1] = v[2] or '0'; out[#out + 1] = v[3] or '0'
  end
end
return out
