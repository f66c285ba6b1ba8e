-- ix_sweep.lua - store_search.c's SC_IX_SWEEP: a slice of one partition's search indexes swept
-- KEYS: ready:projects, ready:high:projects, ix:sweep (a hash: where each walk stopped)
-- ARGV: prefix max cutoff
-- Over the project "default" and every project named in the two sets (a
-- project that ever sent has a ready stream there), in name order from
-- where the last call stopped (field "_next" of ix:sweep), walks its
-- "ix:<project>" (lib/msgix.lua) from where its last walk stopped (field
-- "<project>"; back to the start once at the end), max members in all
-- per call, and
-- removes each whose message is gone: its id below cutoff (older than any
-- message lives, no lookup) or its hash missing. So one call costs at most
-- max lookups however many projects, and an entry outlives its message by
-- at most one lap of the walk. Returns how many went.

local prefix, max, cutoff = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local set = { default = true }
for _, k in ipairs({ KEYS[1], KEYS[2] }) do
  for _, p in ipairs(redis.call('SMEMBERS', k)) do set[p] = true end
end
local names = {}
for p in pairs(set) do names[#names + 1] = p end
table.sort(names)
local gone, left = 0, max
-- one walk of up to n members of key from its saved place; true when it reached the end
local function sweep(key, field, n)
  local from = redis.call('HGET', KEYS[3], field)
  local min = '-'
  if from and from ~= '' then min = '(' .. from end
  local ms = redis.call('ZRANGEBYLEX', key, min, '+', 'LIMIT', 0, n)
  local dead = {}
  for _, m in ipairs(ms) do
    local z = string.find(m, '\0', 1, true)
    local id = z and string.sub(m, z + 1) or ''
    if id < cutoff or redis.call('EXISTS', prefix .. 'msg:' .. id) == 0 then dead[#dead + 1] = m end
  end
  for i = 1, #dead, 4000 do
    redis.call('ZREM', key, unpack(dead, i, math.min(i + 3999, #dead)))
  end
  gone = gone + #dead
  left = left - #ms
  if #ms < n then
    redis.call('HDEL', KEYS[3], field)
    return true
  end
  redis.call('HSET', KEYS[3], field, ms[#ms])
  return false
end
local start = redis.call('HGET', KEYS[3], '_next') or ''
local first = 1
for i, p in ipairs(names) do
  if p >= start then first = i; break end
end
for k = 0, #names - 1 do
  if left <= 0 then
    redis.call('HSET', KEYS[3], '_next', names[(first + k - 1) % #names + 1])
    return gone
  end
  local p = names[(first + k - 1) % #names + 1]
  if not sweep(prefix .. 'ix:' .. p, p, left) then
    redis.call('HSET', KEYS[3], '_next', p)   -- this project again first next time
    return gone
  end
end
redis.call('HDEL', KEYS[3], '_next')
return gone
