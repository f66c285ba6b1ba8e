-- search.lua - store_search.c's SC_SEARCH: one page of GET /v1/messages in one partition
-- KEYS: the project's index (lib/msgix.lua)
-- ARGV: limit budget after lo hi status tag rcpt from created_after created_before prefix mp
-- mp: the members' prefix before the id, "<kind><value>\0": the run of
-- every message ("a:"), or of the most selective filter's recipient,
-- tag or From address.
-- Walks the index from the newest id down: below after (exclusive; "" =
-- from the newest, or from hi), not below lo (inclusive; ""), hi
-- (exclusive; ""); lo and hi are the time parts of ids made at
-- created_after/before (a message's "created" is its id's time; it is
-- compared too, exactly). Each id's
-- hash (prefix .. "msg:" .. id) is read and the filters the index does
-- not answer are checked: status (the message's: the common status of
-- its recipients, else "partial", as GET says), tag (in its tags), rcpt
-- (one of its recipients, lower-cased), from (its From field's address,
-- lower-cased). An id whose hash is gone (expired) is removed from the
-- index. At most budget ids are looked at, so one call is bounded
-- however rare the matches are.
-- Returns {exhausted, last, item...}: exhausted 1 when the walk reached
-- the end of the range (no match left below last), last the last id
-- looked at ("" none); each item {id, created, from, subject, tags,
-- metadata, prio, send_at, n, email1, status1, ...}, newest first, at
-- most limit.

-- @include lib/msgix.lua
local limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local after, lo, hi = ARGV[3], ARGV[4], ARGV[5]
local fst, ftag, frcpt, ffrom = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local cafter, cbefore = tonumber(ARGV[10]), tonumber(ARGV[11])
local prefix, mp = ARGV[12], ARGV[13]
local key = KEYS[1]
-- the run: [mp, mp with its last byte (the \0) raised by one)
local max, min = '(' .. string.sub(mp, 1, -2) .. '\1', '[' .. mp
if after ~= '' then max = '(' .. mp .. after elseif hi ~= '' then max = '(' .. mp .. hi end
if lo ~= '' then min = '[' .. mp .. lo end
local out = { 0, '' }
local found, looked, last = 0, 0, ''
local function summary(st, n)
  if n == 0 then return 'queued' end
  for i = 2, n do
    if st[1] == nil or st[i] == nil or st[i] ~= st[1] then return 'partial' end
  end
  return st[1] or 'queued'
end
while found < limit and looked < budget do
  local want = math.min(200, budget - looked)
  local ids = redis.call('ZREVRANGEBYLEX', key, max, min, 'LIMIT', 0, want)
  for _, member in ipairs(ids) do
    local id = string.sub(member, #mp + 1)
    looked = looked + 1
    last = id
    local km = prefix .. 'msg:' .. id
    local v = redis.call('HMGET', km, 'created', 'from', 'subject', 'tags', 'metadata', 'prio', 'send_at', 'n')
    local created, n = tonumber(v[1]), tonumber(v[8])
    if not created or not n then
      redis.call('ZREM', key, member)
    else
      local ok = (not cafter or created >= cafter) and (not cbefore or created < cbefore)
      if ok and ffrom ~= '' then ok = msgix_addr(v[2]) == ffrom end
      if ok and ftag ~= '' then
        local good, tags = pcall(cjson.decode, v[4] or '[]')
        ok = false
        if good and type(tags) == 'table' then
          for _, t in ipairs(tags) do if t == ftag then ok = true; break end end
        end
      end
      local r
      if ok and n > 0 then
        local f = {}
        for i = 0, n - 1 do
          f[#f + 1] = 'r' .. i .. ':email'
          f[#f + 1] = 'r' .. i .. ':status'
        end
        r = redis.call('HMGET', km, unpack(f))
      end
      if ok and frcpt ~= '' then
        ok = false
        for i = 1, 2 * n, 2 do
          if r[i] and string.lower(r[i]) == frcpt then ok = true; break end
        end
      end
      if ok and fst ~= '' then
        local st = {}
        for i = 1, n do st[i] = r[2 * i] end
        ok = summary(st, n) == fst
      end
      if ok then
        local item = { id, v[1], v[2] or '', v[3] or '', v[4] or '[]', v[5] or '{}', v[6] or 'normal',
          v[7] or '0', v[8] }
        for i = 1, 2 * n do item[#item + 1] = r[i] or '' end
        out[#out + 1] = item
        found = found + 1
        if found >= limit then break end
      end
    end
  end
  if found >= limit then break end
  if #ids < want then
    out[1] = 1
    break
  end
  max = '(' .. mp .. last
end
out[2] = last
return out
