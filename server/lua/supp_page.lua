-- supp_page.lua - store_conn.c's SC_SUPP_PAGE: one page of a suppression list
-- KEYS: supp (hash email -> "<created_ms>:<reason>"), suppidx (zset of the
--       same emails, all scores 0: the list's order, bytewise)
-- ARGV: limit after ("": from the first address)
-- Returns {next, {email, value, ...}}: at most limit entries after `after`,
-- by address; next is the page's last address when more follow, else "".
-- Every writer of supp (st_supp_write, record, bounce) keeps suppidx beside
-- it; when their sizes differ (a list written before the index, by an older
-- release, a copy into a new partition) the index is rebuilt here from the
-- hash first, once: O(n) then, O(log n + limit) for every page after. An
-- address of the index no longer in the hash is dropped from it.

-- @include lib/lexpage.lua
local lim = tonumber(ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if redis.call('ZCARD', KEYS[2]) ~= n then
  redis.call('DEL', KEYS[2])
  local all = redis.call('HKEYS', KEYS[1])
  for i = 1, #all, 1000 do
    local args = {}
    for j = i, math.min(i + 999, #all) do
      args[#args + 1] = 0; args[#args + 1] = all[j]
    end
    redis.call('ZADD', KEYS[2], unpack(args))
  end
end
local names, nxt = lexpage(KEYS[2], ARGV[2], lim)
local out = {}
if #names > 0 then
  local vals = redis.call('HMGET', KEYS[1], unpack(names))
  for i, e in ipairs(names) do
    if vals[i] then
      out[#out + 1] = e; out[#out + 1] = vals[i]
    else
      redis.call('ZREM', KEYS[2], e)
    end
  end
end
return {nxt, out}
