-- bounce.lua - store_conn.c's SC_BOUNCE
-- KEYS: msg, tl, due, events, supp (of the project "default")
-- ARGV: idx action smtp event timeline retention_ms member suppress_reason now_ms
--       prefix content_ms bounced_event latency_ms
-- The suppression (suppress_reason) goes to the list of the message's
-- project ("project" field; none: "default", KEYS[5]); the event to the
-- outbox with p = that project. When the last recipient becomes terminal
-- the content goes (lib/content.lua: deleted, or kept content_ms more) and
-- the timeline is folded into the hash; a DSN after that (a failure of a
-- delivered recipient, a delay) appends to the folded timeline.
-- action "delayed": timeline only. "failed": delivered|sending|deferred|
-- queued -> failed; a deferred one leaves due; one that was not yet
-- final leaves pending (a "sending" one's ready entry is acknowledged by
-- its worker's record, which finds it no longer sending; a "queued" one's
-- by claim). The event is bounced_event (message.bounced) when the
-- recipient was "delivered" and that is given, else event (message.failed).
-- r<i>:lat becomes latency_ms and r<i>:nxt goes (the receipt, record.lua);
-- the message is in the "s:failed" search run (lib/msgix.lua).
-- "complained" (an ARF report): the status stays; the timeline entry,
-- the event (message.complained) and the suppression, once per recipient
-- (r<i>:cmp = now_ms marks it; a second report returns 0).
-- Returns 1 applied, 0 recipient in another state (nothing
-- changed), -1 no such message or recipient.

-- @include lib/project.lua
-- @include lib/content.lua
-- @include lib/msgix.lua
local p = 'r' .. ARGV[1] .. ':'
local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'email', 'project', p .. 'cmp')
local proj = v[3]
if not proj or proj == '' then proj = 'default' end
if not v[1] then return -1 end
if ARGV[2] == 'delayed' then
  if ARGV[5] ~= '' then tl_append(KEYS[1], KEYS[2], ARGV[5]) end
  return 1
end
local function suppress()
  if ARGV[8] ~= '' and v[2] then
    local supp = KEYS[5]
    if proj ~= 'default' then supp = project_prefix(ARGV[10], proj) .. 'supp' end
    redis.call('HSET', supp, string.lower(v[2]), ARGV[9] .. ':' .. ARGV[8])
    redis.call('ZADD', supp .. 'idx', 0, string.lower(v[2]))
  end
end
local st = v[1]
if ARGV[2] == 'complained' then
  if v[4] then return 0 end
  redis.call('HSET', KEYS[1], p .. 'cmp', ARGV[9])
  if ARGV[5] ~= '' then tl_append(KEYS[1], KEYS[2], ARGV[5]) end
  if ARGV[4] ~= '' then redis.call('XADD', KEYS[4], '*', 'e', ARGV[4], 'p', proj) end
  suppress()
  return 1
end
if st ~= 'delivered' and st ~= 'sending' and st ~= 'deferred' and st ~= 'queued' then
  return 0
end
redis.call('HSET', KEYS[1], p .. 'status', 'failed', p .. 'lat', ARGV[13])
msgix_status(KEYS[1], proj, 'failed')
redis.call('HDEL', KEYS[1], p .. 'nxt')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], p .. 'smtp', ARGV[3]) end
if ARGV[5] ~= '' then tl_append(KEYS[1], KEYS[2], ARGV[5]) end
local ev = ARGV[4]
if st == 'delivered' and ARGV[12] ~= '' then ev = ARGV[12] end
if ev ~= '' then redis.call('XADD', KEYS[4], '*', 'e', ev, 'p', proj) end
suppress()
if st == 'deferred' then redis.call('ZREM', KEYS[3], ARGV[7]) end
if st ~= 'delivered' then
  local left = redis.call('HINCRBY', KEYS[1], 'pending', -1)
  if left <= 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[6])
    content_done(KEYS[1], KEYS[2], ARGV[11])
  end
end
return 1
