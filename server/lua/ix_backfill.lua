-- ix_backfill.lua - store_search.c's SC_IX_BACKFILL: a slice of one partition's messages put in the search index
-- KEYS: ix:backfill (a hash: "cursor", the SCAN cursor to go on from; "done" once the scan ended)
-- ARGV: prefix count
-- Messages stored by a release without the search index (or while it was
-- being written) have no members in it (lib/msgix.lua): one SCAN step
-- (COUNT count) over the partition's message hashes ("<prefix>msg:<id>")
-- puts each in its project's index as the enqueue would have, with the
-- rare statuses its recipients have now. ZADD of members that are there
-- already changes nothing, so a message indexed at enqueue, or a slice
-- done twice, is harmless. Returns how many messages it saw, or -1 when
-- the scan had ended before (nothing done).

-- @include lib/msgix.lua
local prefix, count = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[1], 'done') then return -1 end
local cur = redis.call('HGET', KEYS[1], 'cursor') or '0'
local pat = string.gsub(prefix, '[%*%?%[%]\\]', '\\%0') .. 'msg:*'
local r = redis.call('SCAN', cur, 'MATCH', pat, 'COUNT', count, 'TYPE', 'hash')
local seen = 0
for _, k in ipairs(r[2]) do
  local id = string.sub(k, #prefix + 5)
  if id ~= '' and not string.find(id, ':', 1, true) then
    local v = redis.call('HMGET', k, 'project', 'from', 'tags', 'n')
    local n = tonumber(v[4])
    if n then
      local m = msgix_head('\0' .. id, v[2], v[3])
      if n > 0 then
        local f = {}
        for i = 0, n - 1 do
          f[#f + 1] = 'r' .. i .. ':email'
          f[#f + 1] = 'r' .. i .. ':status'
        end
        local rv = redis.call('HMGET', k, unpack(f))
        for i = 1, 2 * n, 2 do
          if rv[i] then
            m[#m + 1] = 0
            m[#m + 1] = 'r:' .. string.lower(rv[i]) .. '\0' .. id
          end
          if msgix_indexed[rv[i + 1]] then
            m[#m + 1] = 0
            m[#m + 1] = 's:' .. rv[i + 1] .. '\0' .. id
          end
        end
      end
      for i = 1, #m, 8000 do
        redis.call('ZADD', msgix_key(prefix, v[1]), unpack(m, i, math.min(i + 7999, #m)))
      end
      seen = seen + 1
    end
  end
end
if r[1] == '0' then
  redis.call('HSET', KEYS[1], 'done', '1')
  redis.call('HDEL', KEYS[1], 'cursor')
else
  redis.call('HSET', KEYS[1], 'cursor', r[1])
end
return seen
