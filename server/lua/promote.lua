-- promote.lua - store_conn.c's SC_PROMOTE
-- KEYS: due, ready, ready:high, ready:projects, ready:high:projects
-- ARGV: now_ms max prefix
-- Returns {members taken from due, earliest remaining score or "0"}.
-- Members whose recipient is no longer deferred/scheduled/queued are
-- dropped ("queued": parked by hand_back.lua, which took it off its lane).
-- Each goes back to its message's lane: ready:high when prio is "high",
-- else (normal, or no prio: stored before lanes) ready; and on that lane
-- to its project's stream (lib/project.lua: "default", or no project,
-- the lane's own key; a project's first entry on a lane adds it to the
-- lane's set and creates the stream's group).

-- @include lib/project.lua
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],
  'LIMIT', 0, tonumber(ARGV[2]))
local made = {}
for _, m in ipairs(items) do
  redis.call('ZREM', KEYS[1], m)
  local id, i = string.match(m, '^(.+)/(%d+)$')
  if id then
    local key = ARGV[3] .. 'msg:' .. id
    local f = 'r' .. i .. ':status'
    local v = redis.call('HMGET', key, f, 'prio', 'project')
    local st = v[1]
    if st == 'deferred' or st == 'scheduled' or st == 'queued' then
      local lane, set = KEYS[2], KEYS[4]
      if v[2] == 'high' then lane, set = KEYS[3], KEYS[5] end
      lane = project_ready(lane, set, v[3], made)
      redis.call('HSET', key, f, 'queued')
      redis.call('XADD', lane, '*', 'm', id, 'r', i)
    end
  end
end
local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nextv = '0'
if nx[2] then nextv = nx[2] end
return {#items, nextv}
