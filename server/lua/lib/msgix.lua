-- lib/msgix.lua - not a script: the search indexes of GET /v1/messages,
-- written by enqueue (msgix_add), read by search.lua
-- Per partition prefix P ("txm{k}:") and project J, sorted sets of
-- message ids, every score 0, so they are ordered by id - and an id
-- (msg_<ULID>) sorts by the time it was made: newest last.
--   P .. "ix:" .. J .. ":all"          every message of the project
--   P .. "ix:" .. J .. ":r:" .. addr   the messages to a recipient (lower-cased)
--   P .. "ix:" .. J .. ":t:" .. tag    the messages with a tag
--   P .. "ix:" .. J .. ":f:" .. addr   the messages from an address (the From field's, lower-cased)
-- A message hash expires (retention) while its ids stay: search.lua drops
-- an id whose hash is gone when it meets it. The ":all" set is also
-- trimmed at each enqueue below the ids of MSGIX_KEEP_MS + retention ago
-- (no message lives longer: send_at is at most 30 days ahead); the other
-- sets expire as a whole once no message has been added to them for the
-- longest life of their newest message.

local MSGIX_ALPHA = '0123456789abcdefghjkmnpqrstvwxyz'
local MSGIX_KEEP_MS = 40 * 86400000

-- msgix_idtime(ms) - "msg_" and the 10 time characters of an id made at ms (util_random_id)
local function msgix_idtime(ms)
  local t = {}
  if ms < 0 then ms = 0 end
  for i = 0, 9 do
    local d = math.floor(ms / 2 ^ (45 - 5 * i)) % 32
    t[i + 1] = string.sub(MSGIX_ALPHA, d + 1, d + 1)
  end
  return 'msg_' .. table.concat(t)
end

-- msgix_addr(from) - the address of a From field ("Name <a@b>" or "a@b"), lower-cased, or nil
local function msgix_addr(from)
  if not from then return nil end
  local a = string.match(from, '<([^<>]+)>%s*$') or string.match(from, '^%s*(%S+@%S+)%s*$')
  if not a then return nil end
  return string.lower(a)
end

local function msgix_add(prefix, project, id, created, life_ms, retention_ms, from, tags_json, emails)
  local ixp = prefix .. 'ix:' .. ((project and project ~= '') and project or 'default') .. ':'
  local all = ixp .. 'all'
  redis.call('ZADD', all, 0, id)
  redis.call('ZREMRANGEBYLEX', all, '-', '(' .. msgix_idtime(created - MSGIX_KEEP_MS - retention_ms))
  local done = {}
  local function sec(k)
    if done[k] then return end
    done[k] = true
    redis.call('ZADD', k, 0, id)
    redis.call('PEXPIRE', k, life_ms)
  end
  local fa = msgix_addr(from)
  if fa then sec(ixp .. 'f:' .. fa) end
  local ok, tags = pcall(cjson.decode, tags_json or '[]')
  if ok and type(tags) == 'table' then
    for _, t in ipairs(tags) do
      if type(t) == 'string' and t ~= '' then sec(ixp .. 't:' .. t) end
    end
  end
  for _, e in ipairs(emails) do sec(ixp .. 'r:' .. string.lower(e)) end
end
