-- lib/msgix.lua - not a script: the search indexes of GET /v1/messages,
-- written by enqueue (msgix_add), read by search.lua, swept by ix_sweep.lua
-- Per partition prefix P ("txm{k}:") and project J two sorted sets, every
-- score 0, so each is ordered by its members' bytes:
--   P .. "ix:" .. J .. ":all"   the id of every message of the project; an
--                               id (msg_<ULID>) sorts by the time it was
--                               made, so this is creation order
--   P .. "ix:" .. J .. ":sec"   "<kind><value>\0<id>" for each recipient
--                               (kind "r:", the address lower-cased), tag
--                               ("t:") and From address ("f:", lower-cased)
--                               of each message: the ids of one value are
--                               one contiguous run, in creation order
-- Two commands per message, whatever it holds. A message hash expires
-- (retention) while its entries stay: search.lua drops one whose hash is
-- gone when it meets it, and ix_sweep.lua walks both sets a slice at a
-- time (the scheduler, every minute) removing them.

-- msgix_addr(from) - the address of a From field ("Name <a@b>" or "a@b"), lower-cased, or nil
local function msgix_addr(from)
  if not from then return nil end
  local a = string.match(from, '<([^<>]+)>%s*$') or string.match(from, '^%s*(%S+@%S+)%s*$')
  if not a then return nil end
  return string.lower(a)
end

local function msgix_add(prefix, project, id, from, tags_json, emails)
  local ixp = prefix .. 'ix:' .. ((project and project ~= '') and project or 'default') .. ':'
  redis.call('ZADD', ixp .. 'all', 0, id)
  local m, seen = {}, {}
  local function add(kind, v)
    local x = kind .. v .. '\0' .. id
    if not seen[x] then
      seen[x] = true
      m[#m + 1] = 0
      m[#m + 1] = x
    end
  end
  local fa = msgix_addr(from)
  if fa then add('f:', fa) end
  local ok, tags = pcall(cjson.decode, tags_json or '[]')
  if ok and type(tags) == 'table' then
    for _, t in ipairs(tags) do
      if type(t) == 'string' and t ~= '' then add('t:', t) end
    end
  end
  for _, e in ipairs(emails) do add('r:', string.lower(e)) end
  if #m > 0 then redis.call('ZADD', ixp .. 'sec', unpack(m)) end
end
