-- record.lua - store_conn.c's SC_RECORD: a batch of delivery outcomes recorded in one call
-- KEYS: due, events, supp (of the project "default"), then per outcome i
--       (1-based): msg (KEYS[2 + 2i]), tl (KEYS[3 + 2i]); then the ready
--       streams the outcomes' entries are on (KEYS[3 + 2n + s])
-- ARGV: retention_ms prefix content_ms, then per outcome i, 17 values from
--       ARGV[4 + 17(i-1)]: entry_id stream status next_ms smtp event timeline
--       attempt member supp_email supp_value f_status f_attempts f_smtp f_dfr
--       latency_ms now_ms
-- stream: s, the entry is on KEYS[3 + 2n + s]. f_*: the recipient's field
-- names ("r<idx>:status" ...) and member "<msg id>/<idx>" (its due set
-- member), built by C, not here.
-- A non-empty supp_email (the recipient, lower-cased by C) is added to the
-- suppression list of the message's project (its "project" field; none:
-- "default", whose list is KEYS[3]) with supp_value ("<now_ms>:<reason>"),
-- in the same step as the outcome. The event goes to the outbox with p =
-- that project. When the last recipient becomes terminal the content goes
-- (lib/content.lua: deleted, or kept content_ms more).
-- A deferral sets r<i>:dfr = 1 (only metrics read it: whether the
-- recipient was deferred before).
-- The receipt's fields (GET /v1/messages/{id}), named from f_status
-- ("r<i>:status" -> "r<i>:lat"): r<i>:lat = latency_ms; a deferral sets
-- r<i>:due and r<i>:nxt = next_ms (due: claim.lua's start of queued_ms);
-- delivered sets r<i>:dat = now_ms; an outcome that is not a deferral
-- removes r<i>:nxt. A status with a search run gets its index member
-- (lib/msgix.lua, msgix_status).
-- Returns one element per outcome, in order: 1 recorded; 2 recorded, the
-- recipient's first deferral; 0 recipient not "sending" (entry acked,
-- nothing else: an outcome recorded before, so a batch sent again after
-- an error changes nothing - except for a "queued" recipient, whose entry
-- stays pending: its claim never reached this Redis, a failover to a
-- replica that did not have it yet, and a reclaim delivers it again; acked,
-- it would stay "queued" with no entry left to take it); -1 stale: another consumer has claimed the
-- recipient since (attempts differ), nothing touched, the entry is theirs
-- now; or an error reply when a command failed for that outcome alone
-- (each runs under pcall, the others are recorded; no roll back, so it
-- may be half written, and its entry stays pending: a reclaim finds the
-- recipient recorded, or "sending" and delivers it again). The acks of
-- the outcomes' entries are sent once per stream at the end.

-- @include lib/project.lua
-- @include lib/content.lua
-- @include lib/batch.lua
-- @include lib/msgix.lua
local n = (#ARGV - 3) / 17
local ack = {}
local function record(i)
  local a = 4 + 17 * (i - 1)
  local km, kt = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local id, sk, st = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local fst, fsmtp, fdfr = ARGV[a + 11], ARGV[a + 13], ARGV[a + 14]
  local v = redis.call('HMGET', km, fst, ARGV[a + 12], 'project', fdfr, 'pending', 'tl')
  if v[1] ~= 'sending' then
    if v[1] ~= 'queued' then batch_mark(ack, sk, id) end
    return 0
  end
  if ARGV[a + 7] ~= '0' and v[2] ~= ARGV[a + 7] then return -1 end
  local proj = v[3]
  if not proj or proj == '' then proj = 'default' end
  if ARGV[a + 9] ~= '' then
    local supp = KEYS[3]
    if proj ~= 'default' then supp = project_prefix(ARGV[2], proj) .. 'supp' end
    redis.call('HSET', supp, ARGV[a + 9], ARGV[a + 10])
    redis.call('ZADD', supp .. 'idx', 0, ARGV[a + 9])
  end
  local ret, left = 1, nil
  local fp = string.gsub(fst, 'status$', '')
  local h = { fst, st }
  if ARGV[a + 4] ~= '' then
    h[3] = fsmtp
    h[4] = ARGV[a + 4]
  end
  table.insert(h, fp .. 'lat')
  table.insert(h, ARGV[a + 15])
  if st == 'delivered' then
    table.insert(h, fp .. 'dat')
    table.insert(h, ARGV[a + 16])
  end
  if st == 'deferred' then
    table.insert(h, fp .. 'due')
    table.insert(h, ARGV[a + 3])
    table.insert(h, fp .. 'nxt')
    table.insert(h, ARGV[a + 3])
    if not v[4] then
      table.insert(h, fdfr)
      table.insert(h, '1')
      ret = 2
    end
  elseif v[4] then
    redis.call('HDEL', km, fp .. 'nxt')
  end
  if st ~= 'deferred' and st ~= 'sending' then
    left = (tonumber(v[5]) or 0) - 1
    table.insert(h, 'pending')
    table.insert(h, left)
  end
  -- the timeline entry goes into the hash's "tl" in the same HSET; a
  -- message stored by an earlier release keeps its list until it is folded
  local tlist = false
  if ARGV[a + 6] ~= '' then
    if v[6] then
      table.insert(h, 'tl')
      table.insert(h, v[6] .. '\n' .. ARGV[a + 6])
    else
      tlist = true
    end
  end
  redis.call('HSET', km, unpack(h))
  msgix_status(km, proj, st)
  if tlist then redis.call('RPUSH', kt, ARGV[a + 6]) end
  if ARGV[a + 5] ~= '' then redis.call('XADD', KEYS[2], '*', 'e', ARGV[a + 5], 'p', proj) end
  if st == 'deferred' then
    redis.call('ZADD', KEYS[1], ARGV[a + 3], ARGV[a + 8])
  elseif left and left <= 0 then
    redis.call('PEXPIRE', km, ARGV[1])
    -- no PEXPIRE of kt: content_done folds it into km and deletes it
    content_done(km, kt, ARGV[3])
  end
  -- last: an outcome that failed half-way keeps its entry pending
  batch_mark(ack, sk, id)
  return ret
end

local out = batch_run('record', record, n)
batch_ack(KEYS, 3 + 2 * n, ack)
return out
