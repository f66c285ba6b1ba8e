-- lib/content.lua - not a script: what happens to a message's content when the message is
-- finished, included by every script that can make a message's last recipient terminal
-- (enqueue: all suppressed; record; cancel; bounce)
-- The MIME is kept in its own key, "<msg key>:mime" (a string), not in
-- the message hash, so it can go on its own while the summary and the
-- timeline stay for GET. content_done(km, keep_ms) runs in the step in
-- which no recipient of the message km can be attempted again: keep_ms
-- 0 deletes the content at once, keep_ms > 0 lets it expire keep_ms
-- later (TXMAIL_CONTENT_RETENTION). A message stored by an earlier
-- release holds its MIME in the hash's "mime" field: that field goes the
-- same way (moved into the key with the expiry, or deleted).

local function content_done(km, keep_ms)
  local kc = km .. ':mime'
  local keep = tonumber(keep_ms) or 0
  local old = redis.call('HGET', km, 'mime')
  if old then
    redis.call('HDEL', km, 'mime')
    if keep > 0 then redis.call('SET', kc, old, 'PX', keep) end
  end
  if keep > 0 then
    redis.call('PEXPIRE', kc, keep)
  else
    redis.call('DEL', kc)
  end
end
