-- key_list.lua - store_conn.c's SC_KEY_LIST
-- KEYS: keys
-- ARGV: prefix
-- Returns a flat list {name, hash, created, last_used, project, scope,
-- allow, ...} sorted by name; a key written before projects reads as
-- project = its name, scope "full", allow "" (as in auth.lua).

local names = redis.call('SMEMBERS', KEYS[1])
table.sort(names)
local out = {}
for _, n in ipairs(names) do
  local h = redis.call('GET', ARGV[1] .. 'keyname:' .. n)
  if h then
    local v = redis.call('HMGET', ARGV[1] .. 'key:' .. h, 'created', 'last_used', 'project', 'scope', 'allow')
    out[#out + 1] = n; out[#out + 1] = h
    out[#out + 1] = v[1] or '0'; out[#out + 1] = v[2] or '0'
    out[#out + 1] = v[3] or n; out[#out + 1] = v[4] or 'full'; out[#out + 1] = v[5] or ''
  end
end
return out
