-- claim.lua - store_conn.c's SC_CLAIM
-- KEYS: msg, the entry's ready stream (its lane)
-- ARGV: entry_id idx owner
-- owner (a consumer name, or "" for no check): claim only while the entry
-- is still pending with that consumer, else nil and nothing touched (an
-- entry store_fetch read earlier and kept may have been reclaimed since).
-- A deliverable recipient ("queued", or "sending" when taken over from a
-- dead worker) becomes "sending" with attempts + 1; returns {rcpt,
-- mail_from, mime, metadata, tags, attempts, created, expires}. Anything
-- else (terminal, canceled, message gone): ack + delete the entry, nil.
-- mime is the key "<msg>:mime" or, for a message stored by an earlier
-- release, the hash's "mime" field; "" when both are gone (content is
-- deleted only once no recipient can be attempted again, so the worker
-- treats "" as a broken store, never sends it).

if ARGV[3] ~= '' and
  #redis.call('XPENDING', KEYS[2], 'workers', ARGV[1], ARGV[1], 1, ARGV[3]) == 0 then
  return false
end
local p = 'r' .. ARGV[2] .. ':'
local st = redis.call('HGET', KEYS[1], p .. 'status')
if st == 'queued' or st == 'sending' then
  redis.call('HSET', KEYS[1], p .. 'status', 'sending')
  local a = redis.call('HINCRBY', KEYS[1], p .. 'attempts', 1)
  local v = redis.call('HMGET', KEYS[1], p .. 'email', 'mail_from', 'mime',
    'metadata', 'tags', 'created', 'expires')
  local mime = redis.call('GET', KEYS[1] .. ':mime') or v[3]
  return {v[1] or '', v[2] or '', mime or '', v[4] or '{}', v[5] or '[]',
    a, v[6] or '0', v[7] or '0'}
end
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
return false
