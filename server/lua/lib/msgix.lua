-- lib/msgix.lua - not a script: the search indexes of GET /v1/messages,
-- written by enqueue (msgix_add), read by search.lua, swept by ix_sweep.lua
-- Per partition prefix P ("txm{k}:") and project J one sorted set,
-- P .. "ix:" .. J, every score 0, so ordered by its members' bytes:
-- "<kind><value>\0<id>" for each message: kind "a:" with no value (every
-- message), "r:" and each recipient (lower-cased), "t:" and each tag, "f:"
-- and its From address (lower-cased). The ids of one kind and value are
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

-- msgix_add - emails: the values of the message's r<i>:email fields, at
-- ARGV[e0], ARGV[e0 + step], ... (n of them); no table is built for them
local function msgix_add(prefix, project, id, from, tags_json, e0, step, n)
  local key = prefix .. 'ix:' .. ((project and project ~= '') and project or 'default')
  local tail = '\0' .. id
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
  -- a value twice (the same recipient in to and cc) is one member: ZADD takes it twice, stores it once
  for i = e0, e0 + step * (n - 1), step do
    m[#m + 1] = 0
    m[#m + 1] = 'r:' .. string.lower(ARGV[i]) .. tail
  end
  redis.call('ZADD', key, unpack(m))
end
