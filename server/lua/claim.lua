-- claim.lua - store_conn.c's SC_CLAIM: the entries of one fetch or reclaim, claimed in one call
-- KEYS: per entry i (1-based): msg (KEYS[2i - 1]), its content "<msg>:mime"
--       (KEYS[2i]); then the ready streams the entries are on (KEYS[2n + s]);
--       then due and sat (the last two)
-- ARGV: consumer now_ms, then per entry i, 6 values from ARGV[3 + 6(i-1)]:
--       entry_id stream mode f_status f_attempts f_email
-- stream: s, the entry is on KEYS[2n + s] (its lane's stream of its
-- project, store_delivery.c). f_*: the recipient's field names,
-- "r<idx>:status" and so on (built by C, not here).
-- mode "1" (an entry store_fetch read earlier and kept): claim only while
-- it is still pending with consumer, else nil and nothing touched (it may
-- have been reclaimed since), and reset its idle time (XCLAIM JUSTID); "0": claim; "2" (a malformed entry, no
-- message): ack + delete it, nil.
-- A deliverable recipient ("queued", or "sending" when taken over from a
-- dead worker) becomes "sending" with attempts + 1; its row is {rcpt,
-- mail_from, mime, metadata, tags, attempts, created, expires, due}: due
-- is when it became due (r<i>:due, set by record.lua at a deferral; else
-- send_at; else created), the start of its queued_ms. r<i>:due is named
-- here from f_status ("r<i>:status" -> "r<i>:due"). Anything
-- else (terminal, canceled, message gone): ack + delete the entry, nil.
-- mime is the key "<msg>:mime" or, for a message stored by an earlier
-- release, the hash's "mime" field; "" when both are gone (content is
-- deleted only once no recipient can be attempted again, so the worker
-- treats "" as a broken store, never sends it).
-- A "queued" recipient whose domain is in sat (lib/sat.lua) with until after
-- now_ms is not claimed (unless its message has expired: the worker records
-- that) but parked where it is read: it stays "queued" with
-- its attempts, its entry is acked and deleted and it waits in due
-- (<msg_id>/<idx>) at the domain's next slot (sat_slot; the field written
-- back); its element is 0. So a backlog for a destination at its cap that
-- reached the stream before the destination was published (or is read
-- again after a restart) costs one script step each, not a claim with its
-- MIME and a hand_back.
-- Returns one element per entry, in order: its row, 0 (parked), nil, or an error
-- reply when a command failed for that entry alone (each entry runs under
-- pcall: the others are still claimed; a script does not roll back, so
-- that entry may be half claimed - "sending", attempts + 1 - and stays
-- pending until a reclaim takes it, which claims a "sending" one again).
-- The acks of the not-deliverable entries are sent once per stream at
-- the end (XACK and XDEL take many ids).

-- @include lib/batch.lua
-- @include lib/sat.lua
local n = (#ARGV - 2) / 6
local drop = {}
local kdue, ksat = KEYS[#KEYS - 1], KEYS[#KEYS]
local now = tonumber(ARGV[2])
-- the saturated domains met in this call (false: not saturated); none looked up when sat is empty
local sat = redis.call('EXISTS', ksat) == 1 and {} or nil
local function saturated(email)
  local d = string.match(email or '', '@([^@]+)$')
  if not d then return nil end
  d = string.lower(d)
  local s = sat[d]
  if s == nil then
    local v = redis.call('HGET', ksat, d)
    s = v and sat_parse(v, d) or false
    sat[d] = s
  end
  if s and s.u > now then return s end
  return nil
end
local function claim(i)
  local a = 3 + 6 * (i - 1)
  local id, st, mode = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  if mode == '2' then
    batch_mark(drop, st, id)
    return false
  end
  if mode == '1' then
    if #redis.call('XPENDING', KEYS[2 * n + st], 'workers', id, id, 1, ARGV[1]) == 0 then
      return false
    end
    -- its idle time counts from the read, maybe long ago: reset it, or a
    -- reclaim (visibility timeout) could take it while it is being sent
    redis.call('XCLAIM', KEYS[2 * n + st], 'workers', ARGV[1], 0, id, 'JUSTID')
  end
  local km = KEYS[2 * i - 1]
  local fdue = string.gsub(ARGV[a + 3], 'status$', 'due')
  local v = redis.call('HMGET', km, ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], 'mail_from',
    'mime', 'metadata', 'tags', 'created', 'expires', fdue, 'send_at')
  if v[1] == 'queued' and sat and (tonumber(v[9]) or 0) > now then
    local s = saturated(v[3])
    if s then
      local at = sat_slot(s, now, tonumber(v[9]))
      local idx = string.match(ARGV[a + 3], '^r(%d+):')
      redis.call('ZADD', kdue, string.format('%d', at), string.match(km, 'msg:(.+)$') .. '/' .. idx)
      batch_mark(drop, st, id)
      return 0
    end
  end
  if v[1] == 'queued' or v[1] == 'sending' then
    local c = (tonumber(v[2]) or 0) + 1
    redis.call('HSET', km, ARGV[a + 3], 'sending', ARGV[a + 4], c)
    local mime = redis.call('GET', KEYS[2 * i]) or v[5]
    local due = v[10]
    if not due or due == '' then due = v[11] end
    if not due or due == '' or due == '0' then due = v[8] or '0' end
    return {v[3] or '', v[4] or '', mime or '', v[6] or '{}', v[7] or '[]',
      c, v[8] or '0', v[9] or '0', due}
  end
  batch_mark(drop, st, id)
  return false
end

local out = batch_run('claim', claim, n)
batch_ack(KEYS, 2 * n, drop)
if sat then
  for _, s in pairs(sat) do
    if s then sat_put(ksat, s) end
  end
end
return out
