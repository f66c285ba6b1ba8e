-- lib/content.lua - not a script: what happens to a message when it is finished, included
-- by every script that can make a message's last recipient terminal (enqueue: all
-- suppressed; record; cancel; bounce), and the timeline append of bounce
-- The MIME is kept in its own key, "<msg key>:mime" (a string), not in
-- the message hash, so it can go on its own while the summary and the
-- timeline stay for GET. content_done(km, kt, keep_ms) runs in the step
-- in which no recipient of the message km can be attempted again:
-- * keep_ms 0 deletes the content at once, keep_ms > 0 lets it expire
--   keep_ms later (TXMAIL_CONTENT_RETENTION). A message stored by an
--   earlier release holds its MIME in the hash's "mime" field: that field
--   goes the same way (moved into the key with the expiry, or deleted).
-- * What only delivery needed leaves the hash (mail_from, expires,
--   tenant; id: the key names it; send_at 0, prio normal and project
--   default are what GET and every script read for an absent field).
-- * The timeline is the hash's "tl" field, its entries joined by "\n"
--   (JSON text never holds a raw newline), written there from the
--   enqueue on. A message stored by an earlier release has it in the
--   list kt instead: that is folded into "tl" here and kt deleted (one
--   key per finished message). GET reads "tl" when present, else kt.
-- tl_append(km, kt, entry) appends to whichever of the two holds the
-- timeline, so an entry after the fold (bounce) never recreates kt
-- without an expiry.

local function content_done(km, kt, keep_ms)
  local kc = km .. ':mime'
  local keep = tonumber(keep_ms) or 0
  -- one read, one HDEL, one DEL: this runs once for every message
  local d = redis.call('HMGET', km, 'mime', 'send_at', 'prio', 'tl', 'project')
  local drop = {'mail_from', 'expires', 'tenant', 'id'}
  if d[1] then
    drop[#drop + 1] = 'mime'
    if keep > 0 then redis.call('SET', kc, d[1], 'PX', keep) end
  end
  if d[2] == '0' then drop[#drop + 1] = 'send_at' end
  if d[3] == 'normal' then drop[#drop + 1] = 'prio' end
  if d[5] == 'default' then drop[#drop + 1] = 'project' end
  redis.call('HDEL', km, unpack(drop))
  if not d[4] then
    -- a message stored by an earlier release: its timeline is the list kt
    local tl = redis.call('LRANGE', kt, 0, -1)
    if #tl > 0 then redis.call('HSET', km, 'tl', table.concat(tl, '\n')) end
  end
  if keep > 0 then
    redis.call('PEXPIRE', kc, keep)
    redis.call('DEL', kt)
  else
    redis.call('DEL', kc, kt)
  end
end

local function tl_append(km, kt, entry)
  local cur = redis.call('HGET', km, 'tl')
  if cur then
    redis.call('HSET', km, 'tl', cur .. '\n' .. entry)
  else
    redis.call('RPUSH', kt, entry)
  end
end
