-- enqueue.lua - store_conn.c's SC_ENQUEUE: a batch of messages (store_enqueue is a batch of one)
-- KEYS: ready, due, events, idem, supp, ready:high, then msg, tl per message,
--       then abandoned (abandoned:<id> of the first message)
-- ARGV: has_idem request_hash response ttl_ms retention_ms nmsgs check
--       project content_ms, then per message: id created expires send_at from mail_from
--       subject mime metadata tags timeline tenant n prio, then per
--       recipient: email kind status event timeline lower
-- prio is "high" (recipients go to ready:high) or "normal" (ready); it is
-- kept in the message hash so promote puts retries back on the same lane.
-- project owns every message of the batch (the hash's "project" field, p
-- of its outbox events); supp is that project's suppression list.
-- Returns {1, ""} stored; {2, response} idempotent replay (nothing stored);
-- {3, ""} idempotency key used with another request hash; {0, index} a
-- message id exists already (or twice in the batch): nothing stored;
-- {4, flags} (only with check "1") a recipient is on the suppression
-- list: nothing stored, flags has one '0'/'1' per recipient of the whole
-- batch, '1' for each one found (by its lower-cased address "lower";
-- recipients given as "suppressed" are not looked up and get '0').
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

local function hset(k, f)
  for i = 1, #f, 400 do
    redis.call('HSET', k, unpack(f, i, math.min(i + 399, #f)))
  end
end
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {5, ''} end
if ARGV[1] == '1' then
  local h = redis.call('HMGET', KEYS[4], 'h', 'r')
  if h[1] then
    if h[1] == ARGV[2] then return {2, h[2] or ''} end
    return {3, ''}
  end
end
local nm = tonumber(ARGV[6])
if ARGV[7] == '1' then
  local q, at, flags = {}, {}, {}
  local pos = 10
  for j = 1, nm do
    local n = tonumber(ARGV[pos + 12])
    pos = pos + 14
    for i = 1, n do
      flags[#flags + 1] = '0'
      if ARGV[pos + 2] ~= 'suppressed' then
        q[#q + 1] = ARGV[pos + 5]
        at[#at + 1] = #flags
      end
      pos = pos + 6
    end
  end
  local hit = false
  for i = 1, #q, 400 do
    local v = redis.call('HMGET', KEYS[5], unpack(q, i, math.min(i + 399, #q)))
    for x = 1, #v do
      if v[x] then
        flags[at[i + x - 1]] = '1'
        hit = true
      end
    end
  end
  if hit then return {4, table.concat(flags)} end
end
local seen = {}
for j = 1, nm do
  local k = KEYS[5 + 2 * j]
  if seen[k] or redis.call('EXISTS', k) == 1 then return {0, tostring(j - 1)} end
  seen[k] = true
end
local pos = 10
for j = 1, nm do
  local km, kt = KEYS[5 + 2 * j], KEYS[6 + 2 * j]
  local id, sa, tl = ARGV[pos], ARGV[pos + 3], ARGV[pos + 10]
  local n = tonumber(ARGV[pos + 12])
  local prio = ARGV[pos + 13]
  local mime = ARGV[pos + 7]
  local lane = KEYS[1]
  if prio == 'high' then lane = KEYS[6] end
  local sched = tonumber(sa) > 0
  local st0 = 'queued'
  if sched then st0 = 'scheduled' end
  local f = {'id', id, 'created', ARGV[pos + 1], 'expires', ARGV[pos + 2],
    'send_at', sa, 'from', ARGV[pos + 4], 'mail_from', ARGV[pos + 5],
    'subject', ARGV[pos + 6], 'metadata', ARGV[pos + 8],
    'tags', ARGV[pos + 9], 'tenant', ARGV[pos + 11], 'n', ARGV[pos + 12],
    'prio', prio, 'project', ARGV[8]}
  pos = pos + 14
  local pending, evs, tls, live = n, {}, {}, {}
  for i = 0, n - 1 do
    local p = 'r' .. i .. ':'
    local st = ARGV[pos + 2]
    if st == 'suppressed' then
      pending = pending - 1
      if ARGV[pos + 3] ~= '' then evs[#evs + 1] = ARGV[pos + 3] end
      if ARGV[pos + 4] ~= '' then tls[#tls + 1] = ARGV[pos + 4] end
    else
      st = st0
      live[#live + 1] = i
    end
    local k = #f
    f[k + 1] = p .. 'email'; f[k + 2] = ARGV[pos]
    f[k + 3] = p .. 'kind'; f[k + 4] = ARGV[pos + 1]
    f[k + 5] = p .. 'status'; f[k + 6] = st
    f[k + 7] = p .. 'attempts'; f[k + 8] = '0'
    f[k + 9] = p .. 'smtp'; f[k + 10] = ''
    pos = pos + 6
  end
  f[#f + 1] = 'pending'; f[#f + 1] = tostring(pending)
  hset(km, f)
  redis.call('SET', km .. ':mime', mime)
  if tl ~= '' then redis.call('RPUSH', kt, tl) end
  for _, x in ipairs(tls) do redis.call('RPUSH', kt, x) end
  for _, x in ipairs(evs) do redis.call('XADD', KEYS[3], '*', 'e', x, 'p', ARGV[8]) end
  for _, i in ipairs(live) do
    if sched then
      redis.call('ZADD', KEYS[2], sa, id .. '/' .. i)
    else
      redis.call('XADD', lane, '*', 'm', id, 'r', tostring(i))
    end
  end
  if pending <= 0 then
    redis.call('PEXPIRE', km, ARGV[5])
    redis.call('PEXPIRE', kt, ARGV[5])
    content_done(km, kt, ARGV[9])
  end
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[4], 'h', ARGV[2], 'r', ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return {1, ''}
