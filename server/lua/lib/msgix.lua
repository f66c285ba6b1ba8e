-- lib/msgix.lua - not a script: the search indexes of GET /v1/messages,
-- written by enqueue (msgix_add), read by search.lua, swept by ix_sweep.lua
-- Per partition prefix P ("txm{k}:") and project J one sorted set,
-- P .. "ix:" .. J, every score 0, so ordered by its members' bytes:
-- "<kind><value>\0<id>" for each message: kind "a:" with no value (every
-- message), "r:" and each recipient (lower-cased), "t:" and each tag, "f:"
-- and its From address (lower-cased), "s:" and each status of
-- msgix_indexed a recipient of it has had (msgix_status: the rare ones a
-- search by status must not walk every message for; delivered, queued
-- and sending are common, found on the "a:" run). An "s:" member stays
-- when the status changes (search.lua checks the message's status
-- anyway): a run of "s:deferred" holds every message once deferred.
-- The ids of one kind and value are
-- one contiguous run, and an id (msg_<ULID>) sorts by the time it was
-- made, so each run is in creation order: the run a search walks. One
-- command per message, whatever it holds. A message hash expires
-- (retention) while its members stay: search.lua drops one whose hash is
-- gone when it meets it, and ix_sweep.lua walks the set a slice at a time
-- (the scheduler, every minute) removing them.

-- msgix_addr(from) - the address of a From field ("Name <a@b>" or "a@b"), lower-cased, or nil
local function msgix_addr(from)
  if not from then return nil end
  local a = string.match(from, '<([^<>]+)>%s*$') or string.match(from, '^%s*(%S+@%S+)%s*$')
  if not a then return nil end
  return string.lower(a)
end

-- the statuses with an "s:" run (store_search.c's search_status_run agrees)
local msgix_indexed = { scheduled = true, deferred = true, failed = true, expired = true,
  suppressed = true, canceled = true }

-- msgix_key - the index of project (none: "default") under the partition prefix
local function msgix_key(prefix, project)
  return prefix .. 'ix:' .. ((project and project ~= '') and project or 'default')
end

-- msgix_status - a recipient of the message whose hash is km
-- ("<prefix>msg:<id>") of project got status st: its "s:" member when st
-- is one of msgix_indexed
local function msgix_status(km, project, st)
  if not msgix_indexed[st] then return end
  local prefix, id = string.match(km, '^(.*)msg:([^:]+)$')
  if prefix then redis.call('ZADD', msgix_key(prefix, project), 0, 's:' .. st .. '\0' .. id) end
end

-- msgix_add - emails: the values of the message's r<i>:email fields, at
-- ARGV[e0], ARGV[e0 + step], ... (n of them), each recipient's status
-- (r<i>:status) 4 places after its email; no table is built for them
-- msgix_head - the ZADD arguments of a message's "a:", "f:" and "t:" members (tail: "\0" .. id)
local function msgix_head(tail, from, tags_json)
  local m = { 0, 'a:' .. tail }
  local fa = msgix_addr(from)
  if fa then m[#m + 1] = 0; m[#m + 1] = 'f:' .. fa .. tail end
  if tags_json and tags_json ~= '[]' and tags_json ~= '' then
    local ok, tags = pcall(cjson.decode, tags_json)
    if ok and type(tags) == 'table' then
      for _, t in ipairs(tags) do
        if type(t) == 'string' and t ~= '' then m[#m + 1] = 0; m[#m + 1] = 't:' .. t .. tail end
      end
    end
  end
  return m
end

local function msgix_add(prefix, project, id, from, tags_json, e0, step, n)
  local key = msgix_key(prefix, project)
  local tail = '\0' .. id
  local m = msgix_head(tail, from, tags_json)
  -- a value twice (the same recipient in to and cc) is one member: ZADD takes it twice, stores it once
  for i = e0, e0 + step * (n - 1), step do
    m[#m + 1] = 0
    m[#m + 1] = 'r:' .. string.lower(ARGV[i]) .. tail
    if msgix_indexed[ARGV[i + 4]] then m[#m + 1] = 0; m[#m + 1] = 's:' .. ARGV[i + 4] .. tail end
  end
  redis.call('ZADD', key, unpack(m))
end
