-- trim.lua - store_conn.c's SC_TRIM
-- KEYS: events
-- ARGV: before_ms
-- XTRIM MINID to the smallest of <before_ms>-0, each group's
-- last-delivered-id + 1 and its oldest pending id: an event a group has
-- not read or not acknowledged stays. Returns how many entries went.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local lm, ls = tonumber(ARGV[1]), 0
local function lower(id, plus)
  if type(id) ~= 'string' then return end
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  a = tonumber(a); b = tonumber(b)
  if b then b = b + plus end
  if a and b and (a < lm or (a == lm and b < ls)) then lm = a; ls = b end
end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, pend
  for i = 1, #g - 1, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'pending' then pend = g[i + 1]
    elseif g[i] == 'last-delivered-id' then lower(g[i + 1], 1) end
  end
  if name and pend and pend > 0 then
    local p = redis.call('XPENDING', KEYS[1], name)
    lower(p[2], 0)
  end
end
if lm <= 0 and ls <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', lm, ls))
