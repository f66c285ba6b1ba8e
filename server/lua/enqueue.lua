-- enqueue.lua - store_conn.c's SC_ENQUEUE: a batch of messages (store_enqueue is a batch of one)
-- KEYS: ready, due, events, idem, supp, ready:high, then msg of each message, then tl of
--       each, then mime ("<msg>:mime") of each, then sat, then abandoned (abandoned:<id>
--       of the first)
-- ARGV: has_idem request_hash response ttl_ms retention_ms nmsgs check project
--       content_ms nq, then nq lower-cased addresses to look up in supp, then nd and
--       nd recipient domains (lower-cased), then per message: nh nt ne nl mode id
--       mime created expires send_at from mail_from subject metadata tags tenant n
--       prio pending, then nh recipient hash arguments, nt timeline entries, ne
--       outbox events, nl ready/due arguments.
-- st_enqueue (store_messages.c) builds all of it in C, so this script concatenates
-- nothing and builds no table: it walks counts. The message's own fields are
-- named here, in the one HSET that unpacks the recipients' fields and values
-- after them (r<i>:email r<i>:kind r<i>:status r<i>:attempts r<i>:smtp, names
-- and values made in C; a name costs more as an argument than as a constant);
-- the timeline is the message's first entry, then each suppressed recipient's,
-- joined by "\n" into the hash's "tl" field (the tl key is only deleted, by
-- content_done: a list exists for messages stored by earlier releases);
-- the events are the suppressed recipients'; per live recipient, its ready
-- entry's "r" and its domain's number in the nd domains (mode "n": lane ready, "h":
-- ready:high) or, mode "s" (scheduled), a "send_at member" pair of due ("<id>/<i>").
-- nl 0: every recipient is suppressed.
-- Saturated destinations (sat.lua, server/fair.h): a recipient whose domain
-- has a field in sat (lib/sat.lua) with until after the message's created
-- time does not go into the ready stream, where every delivery behind it
-- would wait while the feeder reads it only to park it: it waits in due, as
-- the feeder would have parked it, at the domain's next slot (sat_slot). The
-- field is written back with its next slot, so the next parking goes after it.
-- The lane's stream is the project's (lib/project.lua's project_ready:
-- the key itself for "default", else "<key>:p:<project>", its set
-- "<key>:projects"; the first message of a project on a lane adds it to
-- the set and makes the stream's group: one SADD per call and lane).
-- prio ("high" or "normal") is kept in the message hash so promote puts
-- retries back on the same lane.
-- Each message is added to the search indexes (lib/msgix.lua) of its
-- project in its partition (the prefix is KEYS[1]'s, "<prefix>ready").
-- project owns every message of the batch (the hash's "project" field, p
-- of its outbox events); supp is that project's suppression list.
-- Returns {1, ""} stored; {2, response} idempotent replay (nothing stored);
-- {3, ""} idempotency key used with another request hash; {0, index} a
-- message id exists already (or twice in the batch): nothing stored;
-- {4, flags} (only with check "1") a recipient is on the suppression
-- list: nothing stored, flags has one '0'/'1' per looked-up address, in
-- order, '1' for each one found (C maps them back to the batch's recipients;
-- recipients given as "suppressed" are not looked up).
-- {5, ""} the first message's id is marked abandoned: nothing stored. The
-- mark is set by abandon.lua when an earlier reply was lost and this call
-- was settled as not stored (store_messages.c), so this copy of it, late
-- from a stalled Redis or a slow socket, must not store it now. Checked
-- before anything else.
-- The idempotency record is looked at next, so a replay or a conflict is
-- never answered with {4, ...}.
-- Recipients with status "suppressed" are terminal at once: not queued,
-- not counted in pending, their event goes to the outbox and their
-- timeline entry after the message's first one.
-- The MIME goes to its own key, "<msg>:mime", not into the hash (see
-- lib/content.lua); a message whose recipients are all suppressed is
-- finished at once, and its content goes in the same step.

-- @include lib/content.lua
-- @include lib/project.lua
-- @include lib/sat.lua
-- @include lib/msgix.lua

-- cmd k ARGV[a..b], in calls of at most 4000 arguments (unpack's stack); a
-- chunk starts an even distance from a, so field/value and score/member pairs stay whole
local function calln(cmd, k, a, b)
  for i = a, b, 4000 do
    redis.call(cmd, k, unpack(ARGV, i, math.min(i + 3999, b)))
  end
end
local nm = tonumber(ARGV[6])
local nq = tonumber(ARGV[10])
local nd = tonumber(ARGV[11 + nq])
local ksat = KEYS[#KEYS - 1]
-- one EXISTS says "no abandoned mark and no message id taken", the usual case
local taken = redis.call('EXISTS', KEYS[#KEYS], unpack(KEYS, 7, 6 + nm)) > 0
if taken and redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {5, ''} end
if ARGV[1] == '1' then
  local h = redis.call('HMGET', KEYS[4], 'h', 'r')
  if h[1] then
    if h[1] == ARGV[2] then return {2, h[2] or ''} end
    return {3, ''}
  end
end
if ARGV[7] == '1' and nq > 0 then
  local got, hit = {}, false
  for i = 11, 10 + nq, 4000 do
    local v = redis.call('HMGET', KEYS[5], unpack(ARGV, i, math.min(i + 3999, 10 + nq)))
    got[#got + 1] = v
    for x = 1, #v do
      if v[x] then hit = true; break end
    end
  end
  if hit then
    local flags = {}
    for _, v in ipairs(got) do
      for x = 1, #v do flags[#flags + 1] = v[x] and '1' or '0' end
    end
    return {4, table.concat(flags)}
  end
end
if taken or nm > 1 then
  local seen = {}
  for j = 1, nm do
    local k = KEYS[6 + j]
    if seen[k] or (taken and redis.call('EXISTS', k) == 1) then return {0, tostring(j - 1)} end
    seen[k] = true
  end
end
local pos = 12 + nq + nd
local made = {}
-- the saturated domains among the nd (usually none: one HMGET that finds nothing)
local sat = {}
if nd > 0 then
  local d0 = 12 + nq
  for i = d0, d0 + nd - 1, 4000 do
    local v = redis.call('HMGET', ksat, unpack(ARGV, i, math.min(i + 3999, d0 + nd - 1)))
    for x = 1, #v do
      if v[x] then sat[i - d0 + x] = sat_parse(v[x], ARGV[i + x - 1]) end
    end
  end
end
for j = 1, nm do
  local km, kt = KEYS[6 + j], KEYS[6 + nm + j]
  local nh, nt = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1])
  local ne, nl = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  local mode = ARGV[pos + 4]
  local a = pos + 19
  local b = math.min(a + nh - 1, a + 3999)
  -- the timeline is the hash's "tl" field from the start, entries joined
  -- by "\n": no list key to write, expire, read and fold per message
  local tlv = ''
  if nt == 1 then tlv = ARGV[a + nh] elseif nt > 1 then tlv = table.concat(ARGV, '\n', a + nh, a + nh + nt - 1) end
  redis.call('HSET', km, 'id', ARGV[pos + 5], 'created', ARGV[pos + 7], 'expires', ARGV[pos + 8],
    'send_at', ARGV[pos + 9], 'from', ARGV[pos + 10], 'mail_from', ARGV[pos + 11],
    'subject', ARGV[pos + 12], 'metadata', ARGV[pos + 13], 'tags', ARGV[pos + 14],
    'tenant', ARGV[pos + 15], 'n', ARGV[pos + 16], 'prio', ARGV[pos + 17], 'project', ARGV[8],
    'pending', ARGV[pos + 18], 'tl', tlv, unpack(ARGV, a, b))
  if b < a + nh - 1 then calln('HSET', km, b + 1, a + nh - 1) end
  -- the search indexes (lib/msgix.lua); a recipient's 5 field/value pairs start
  -- with r<i>:email (st_enqueue_msg_args, ST_RCPT_FIELDS): its address is every 10th,
  -- its status (r<i>:status: queued, scheduled or suppressed) 4 after it
  msgix_add(string.sub(KEYS[1], 1, #KEYS[1] - 5), ARGV[8], ARGV[pos + 5], ARGV[pos + 10], ARGV[pos + 14],
    a + 1, 10, nh / 10)
  redis.call('SET', KEYS[6 + 2 * nm + j], ARGV[pos + 6])
  a = a + nh + nt
  for i = a, a + ne - 1 do redis.call('XADD', KEYS[3], '*', 'e', ARGV[i], 'p', ARGV[8]) end
  a = a + ne
  if nl == 0 then
    redis.call('PEXPIRE', km, ARGV[5])
    content_done(km, kt, ARGV[9])
  elseif mode == 's' then
    calln('ZADD', KEYS[2], a, a + nl - 1)
  else
    local lane, id = KEYS[1], ARGV[pos + 5]
    if mode == 'h' then lane = KEYS[6] end
    lane = project_ready(lane, lane .. ':projects', ARGV[8], made)
    local now, exp = tonumber(ARGV[pos + 7]), tonumber(ARGV[pos + 8])
    for i = a, a + nl - 1, 2 do
      local s = sat[tonumber(ARGV[i + 1])]
      if s and s.u > now then
        redis.call('ZADD', KEYS[2], string.format('%d', sat_slot(s, now, exp)), id .. '/' .. ARGV[i])
      else
        redis.call('XADD', lane, '*', 'm', id, 'r', ARGV[i])
      end
    end
  end
  pos = a + nl
end
for _, s in pairs(sat) do sat_put(ksat, s) end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[4], 'h', ARGV[2], 'r', ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return {1, ''}
