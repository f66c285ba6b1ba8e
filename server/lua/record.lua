-- record.lua - store_conn.c's SC_RECORD
-- KEYS: msg, tl, the entry's ready stream (its lane), due, events, supp (of
--       the project "default")
-- ARGV: entry_id idx status next_ms smtp event timeline attempt retention_ms
--       member suppress_reason now_ms prefix content_ms
-- A non-empty suppress_reason adds the (lower-cased) recipient to the
-- suppression list of the message's project (its "project" field; none:
-- "default", whose list is KEYS[6]) as "<now_ms>:<reason>", in the same
-- step as the outcome. The event goes to the outbox with p = that project.
-- When the last recipient becomes terminal the content goes
-- (lib/content.lua: deleted, or kept content_ms more).
-- A deferral sets r<i>:dfr = 1 (only metrics read it: whether the
-- recipient was deferred before).
-- Returns 1 recorded; 2 recorded, the recipient's first deferral; 0 recipient not "sending" (entry acked, nothing
-- else); -1 stale: another consumer has claimed the recipient since
-- (attempts differ), nothing touched, the entry is theirs now.

-- @include lib/project.lua
-- @include lib/content.lua
local p = 'r' .. ARGV[2] .. ':'
local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'attempts', 'project')
local proj = v[3]
if not proj or proj == '' then proj = 'default' end
if v[1] ~= 'sending' then
  redis.call('XACK', KEYS[3], 'workers', ARGV[1])
  redis.call('XDEL', KEYS[3], ARGV[1])
  return 0
end
if ARGV[8] ~= '0' and v[2] ~= ARGV[8] then return -1 end
local st = ARGV[3]
redis.call('HSET', KEYS[1], p .. 'status', st)
if ARGV[11] ~= '' then
  local e = redis.call('HGET', KEYS[1], p .. 'email')
  local supp = KEYS[6]
  if proj ~= 'default' then supp = project_prefix(ARGV[13], proj) .. 'supp' end
  if e then redis.call('HSET', supp, string.lower(e), ARGV[12] .. ':' .. ARGV[11]) end
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], p .. 'smtp', ARGV[5]) end
if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end
if ARGV[6] ~= '' then redis.call('XADD', KEYS[5], '*', 'e', ARGV[6], 'p', proj) end
redis.call('XACK', KEYS[3], 'workers', ARGV[1])
redis.call('XDEL', KEYS[3], ARGV[1])
local ret = 1
if st == 'deferred' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[10])
  if redis.call('HSETNX', KEYS[1], p .. 'dfr', '1') == 1 then ret = 2 end
elseif st ~= 'sending' then
  local left = redis.call('HINCRBY', KEYS[1], 'pending', -1)
  if left <= 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[9])
    redis.call('PEXPIRE', KEYS[2], ARGV[9])
    content_done(KEYS[1], KEYS[2], ARGV[14])
  end
end
return ret
