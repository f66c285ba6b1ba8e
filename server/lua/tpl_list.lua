-- tpl_list.lua - store_conn.c's SC_TPL_LIST: one page of a project's templates
-- KEYS: tpls (all scores 0, so a range BYLEX is sorted by name, bytewise)
-- ARGV: prefix limit after ("": from the first name)
-- Returns {next, {name, json, created, updated, ...}}: at most limit
-- templates after `after`, by name; next is the page's last name when more
-- follow, else "". A name in tpls without its hash (never written so by
-- tpl_put/tpl_del) is left out.

-- @include lib/lexpage.lua
local names, nxt = lexpage(KEYS[1], ARGV[3], tonumber(ARGV[2]))
local out = {}
for _, n in ipairs(names) do
  local v = redis.call('HMGET', ARGV[1] .. 'tpl:' .. n, 'json', 'created', 'updated')
  if v[1] then
    out[#out + 1] = n; out[#out + 1] = v[1]
    out[#out + 1] = v[2] or '0'; out[#out + 1] = v[3] or '0'
  end
end
return {nxt, out}
