/*
 * store_lua.h - the Lua scripts of store.c, as C string literals (no build
 * step generates them). Included by store.c only. Each script is one
 * atomic state change; the key layout and the recipient state machine are
 * described in store.h and docs/store.md.
 *
 * Scripts never compute timestamps themselves: every time (now, lease end,
 * due time) comes from C as a decimal string, so nothing is rounded by
 * Lua's number formatting. Keys not known before the script runs (msg:<id>
 * in promote, wh:<member> in the webhook scripts) are built from the
 * prefix passed in ARGV; they share the {0} hash tag with KEYS.
 */
#ifndef SERVER_STORE_LUA_H
#define SERVER_STORE_LUA_H

/*
 * enqueue (a batch of messages; store_enqueue is a batch of one)
 * KEYS: ready, due, events, idem, supp, ready:high, then msg, tl per message
 * ARGV: has_idem request_hash response ttl_ms retention_ms nmsgs check,
 *       then per message: id created expires send_at from mail_from
 *       subject mime metadata tags timeline tenant n prio, then per
 *       recipient: email kind status event timeline lower
 * prio is "high" (recipients go to ready:high) or "normal" (ready); it is
 * kept in the message hash so promote puts retries back on the same lane.
 * Returns {1, ""} stored; {2, response} idempotent replay (nothing stored);
 * {3, ""} idempotency key used with another request hash; {0, index} a
 * message id exists already (or twice in the batch): nothing stored;
 * {4, flags} (only with check "1") a recipient is on the suppression
 * list: nothing stored, flags has one '0'/'1' per recipient of the whole
 * batch, '1' for each one found (by its lower-cased address "lower";
 * recipients given as "suppressed" are not looked up and get '0').
 * The idempotency record is looked at first, so a replay or a conflict is
 * never answered with {4, ...}.
 * Recipients with status "suppressed" are terminal at once: not queued,
 * not counted in pending, their event goes to the outbox and their
 * timeline entry after the message's first one.
 */
static const char store_lua_enqueue[] =
	"local function hset(k, f)\n"
	"  for i = 1, #f, 400 do\n"
	"    redis.call('HSET', k, unpack(f, i, math.min(i + 399, #f)))\n"
	"  end\n"
	"end\n"
	"if ARGV[1] == '1' then\n"
	"  local h = redis.call('HMGET', KEYS[4], 'h', 'r')\n"
	"  if h[1] then\n"
	"    if h[1] == ARGV[2] then return {2, h[2] or ''} end\n"
	"    return {3, ''}\n"
	"  end\n"
	"end\n"
	"local nm = tonumber(ARGV[6])\n"
	"if ARGV[7] == '1' then\n"
	"  local q, at, flags = {}, {}, {}\n"
	"  local pos = 8\n"
	"  for j = 1, nm do\n"
	"    local n = tonumber(ARGV[pos + 12])\n"
	"    pos = pos + 14\n"
	"    for i = 1, n do\n"
	"      flags[#flags + 1] = '0'\n"
	"      if ARGV[pos + 2] ~= 'suppressed' then\n"
	"        q[#q + 1] = ARGV[pos + 5]\n"
	"        at[#at + 1] = #flags\n"
	"      end\n"
	"      pos = pos + 6\n"
	"    end\n"
	"  end\n"
	"  local hit = false\n"
	"  for i = 1, #q, 400 do\n"
	"    local v = redis.call('HMGET', KEYS[5], unpack(q, i, math.min(i + 399, #q)))\n"
	"    for x = 1, #v do\n"
	"      if v[x] then\n"
	"        flags[at[i + x - 1]] = '1'\n"
	"        hit = true\n"
	"      end\n"
	"    end\n"
	"  end\n"
	"  if hit then return {4, table.concat(flags)} end\n"
	"end\n"
	"local seen = {}\n"
	"for j = 1, nm do\n"
	"  local k = KEYS[5 + 2 * j]\n"
	"  if seen[k] or redis.call('EXISTS', k) == 1 then return {0, tostring(j - 1)} end\n"
	"  seen[k] = true\n"
	"end\n"
	"local pos = 8\n"
	"for j = 1, nm do\n"
	"  local km, kt = KEYS[5 + 2 * j], KEYS[6 + 2 * j]\n"
	"  local id, sa, tl = ARGV[pos], ARGV[pos + 3], ARGV[pos + 10]\n"
	"  local n = tonumber(ARGV[pos + 12])\n"
	"  local prio = ARGV[pos + 13]\n"
	"  local lane = KEYS[1]\n"
	"  if prio == 'high' then lane = KEYS[6] end\n"
	"  local sched = tonumber(sa) > 0\n"
	"  local st0 = 'queued'\n"
	"  if sched then st0 = 'scheduled' end\n"
	"  local f = {'id', id, 'created', ARGV[pos + 1], 'expires', ARGV[pos + 2],\n"
	"    'send_at', sa, 'from', ARGV[pos + 4], 'mail_from', ARGV[pos + 5],\n"
	"    'subject', ARGV[pos + 6], 'mime', ARGV[pos + 7], 'metadata', ARGV[pos + 8],\n"
	"    'tags', ARGV[pos + 9], 'tenant', ARGV[pos + 11], 'n', ARGV[pos + 12],\n"
	"    'prio', prio}\n"
	"  pos = pos + 14\n"
	"  local pending, evs, tls, live = n, {}, {}, {}\n"
	"  for i = 0, n - 1 do\n"
	"    local p = 'r' .. i .. ':'\n"
	"    local st = ARGV[pos + 2]\n"
	"    if st == 'suppressed' then\n"
	"      pending = pending - 1\n"
	"      if ARGV[pos + 3] ~= '' then evs[#evs + 1] = ARGV[pos + 3] end\n"
	"      if ARGV[pos + 4] ~= '' then tls[#tls + 1] = ARGV[pos + 4] end\n"
	"    else\n"
	"      st = st0\n"
	"      live[#live + 1] = i\n"
	"    end\n"
	"    local k = #f\n"
	"    f[k + 1] = p .. 'email'; f[k + 2] = ARGV[pos]\n"
	"    f[k + 3] = p .. 'kind'; f[k + 4] = ARGV[pos + 1]\n"
	"    f[k + 5] = p .. 'status'; f[k + 6] = st\n"
	"    f[k + 7] = p .. 'attempts'; f[k + 8] = '0'\n"
	"    f[k + 9] = p .. 'smtp'; f[k + 10] = ''\n"
	"    pos = pos + 6\n"
	"  end\n"
	"  f[#f + 1] = 'pending'; f[#f + 1] = tostring(pending)\n"
	"  hset(km, f)\n"
	"  if tl ~= '' then redis.call('RPUSH', kt, tl) end\n"
	"  for _, x in ipairs(tls) do redis.call('RPUSH', kt, x) end\n"
	"  for _, x in ipairs(evs) do redis.call('XADD', KEYS[3], '*', 'e', x) end\n"
	"  for _, i in ipairs(live) do\n"
	"    if sched then\n"
	"      redis.call('ZADD', KEYS[2], sa, id .. '/' .. i)\n"
	"    else\n"
	"      redis.call('XADD', lane, '*', 'm', id, 'r', tostring(i))\n"
	"    end\n"
	"  end\n"
	"  if pending <= 0 then\n"
	"    redis.call('PEXPIRE', km, ARGV[5])\n"
	"    redis.call('PEXPIRE', kt, ARGV[5])\n"
	"  end\n"
	"end\n"
	"if ARGV[1] == '1' then\n"
	"  redis.call('HSET', KEYS[4], 'h', ARGV[2], 'r', ARGV[3])\n"
	"  redis.call('PEXPIRE', KEYS[4], ARGV[4])\n"
	"end\n"
	"return {1, ''}\n";

/*
 * claim
 * KEYS: msg, the entry's ready stream (its lane)
 * ARGV: entry_id idx owner
 * owner (a consumer name, or "" for no check): claim only while the entry
 * is still pending with that consumer, else nil and nothing touched (an
 * entry store_fetch read earlier and kept may have been reclaimed since).
 * A deliverable recipient ("queued", or "sending" when taken over from a
 * dead worker) becomes "sending" with attempts + 1; returns {rcpt,
 * mail_from, mime, metadata, tags, attempts, created, expires}. Anything
 * else (terminal, canceled, message gone): ack + delete the entry, nil.
 */
static const char store_lua_claim[] =
	"if ARGV[3] ~= '' and\n"
	"  #redis.call('XPENDING', KEYS[2], 'workers', ARGV[1], ARGV[1], 1, ARGV[3]) == 0 then\n"
	"  return false\n"
	"end\n"
	"local p = 'r' .. ARGV[2] .. ':'\n"
	"local st = redis.call('HGET', KEYS[1], p .. 'status')\n"
	"if st == 'queued' or st == 'sending' then\n"
	"  redis.call('HSET', KEYS[1], p .. 'status', 'sending')\n"
	"  local a = redis.call('HINCRBY', KEYS[1], p .. 'attempts', 1)\n"
	"  local v = redis.call('HMGET', KEYS[1], p .. 'email', 'mail_from', 'mime',\n"
	"    'metadata', 'tags', 'created', 'expires')\n"
	"  return {v[1] or '', v[2] or '', v[3] or '', v[4] or '{}', v[5] or '[]',\n"
	"    a, v[6] or '0', v[7] or '0'}\n"
	"end\n"
	"redis.call('XACK', KEYS[2], 'workers', ARGV[1])\n"
	"redis.call('XDEL', KEYS[2], ARGV[1])\n"
	"return false\n";

/*
 * record
 * KEYS: msg, tl, the entry's ready stream (its lane), due, events, supp
 * ARGV: entry_id idx status next_ms smtp event timeline attempt retention_ms
 *       member suppress_reason now_ms
 * A non-empty suppress_reason adds the (lower-cased) recipient to supp as
 * "<now_ms>:<reason>", in the same step as the outcome.
 * Returns 1 recorded; 0 recipient not "sending" (entry acked, nothing
 * else); -1 stale: another consumer has claimed the recipient since
 * (attempts differ), nothing touched, the entry is theirs now.
 */
static const char store_lua_record[] =
	"local p = 'r' .. ARGV[2] .. ':'\n"
	"local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'attempts')\n"
	"if v[1] ~= 'sending' then\n"
	"  redis.call('XACK', KEYS[3], 'workers', ARGV[1])\n"
	"  redis.call('XDEL', KEYS[3], ARGV[1])\n"
	"  return 0\n"
	"end\n"
	"if ARGV[8] ~= '0' and v[2] ~= ARGV[8] then return -1 end\n"
	"local st = ARGV[3]\n"
	"redis.call('HSET', KEYS[1], p .. 'status', st)\n"
	"if ARGV[11] ~= '' then\n"
	"  local e = redis.call('HGET', KEYS[1], p .. 'email')\n"
	"  if e then redis.call('HSET', KEYS[6], string.lower(e), ARGV[12] .. ':' .. ARGV[11]) end\n"
	"end\n"
	"if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], p .. 'smtp', ARGV[5]) end\n"
	"if ARGV[7] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[7]) end\n"
	"if ARGV[6] ~= '' then redis.call('XADD', KEYS[5], '*', 'e', ARGV[6]) end\n"
	"redis.call('XACK', KEYS[3], 'workers', ARGV[1])\n"
	"redis.call('XDEL', KEYS[3], ARGV[1])\n"
	"if st == 'deferred' then\n"
	"  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[10])\n"
	"elseif st ~= 'sending' then\n"
	"  local left = redis.call('HINCRBY', KEYS[1], 'pending', -1)\n"
	"  if left <= 0 then\n"
	"    redis.call('PEXPIRE', KEYS[1], ARGV[9])\n"
	"    redis.call('PEXPIRE', KEYS[2], ARGV[9])\n"
	"  end\n"
	"end\n"
	"return 1\n";

/*
 * hand_back (shutdown: a delivery goes back without an outcome)
 * KEYS: msg, the entry's ready stream (its lane)
 * ARGV: entry_id idx attempt counted consumer msg_id
 * Only while the entry is still pending with consumer. attempt "0": an
 * entry read but never claimed (store_fetch's carry): one whose recipient
 * is "queued" goes back; "sending" is left alone (reclaimed as usual).
 * Otherwise the recipient must be "sending" with that attempt number: it
 * becomes "queued" again, with attempts - 1 unless counted is "1" (the
 * attempt had begun). Either way the entry is acked and deleted and,
 * when the recipient went back, a new entry {m, r} is added to the same
 * lane, so the next fetch of any worker takes it at once.
 * Returns 1 handed back; 0 entry acked, recipient had moved on (recorded,
 * canceled); -1 nothing touched (not ours any more, or reclaimed since).
 */
static const char store_lua_hand_back[] =
	"if #redis.call('XPENDING', KEYS[2], 'workers', ARGV[1], ARGV[1], 1, ARGV[5]) == 0 then\n"
	"  return -1\n"
	"end\n"
	"local p = 'r' .. ARGV[2] .. ':'\n"
	"local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'attempts')\n"
	"local back = false\n"
	"if ARGV[3] == '0' then\n"
	"  if v[1] == 'sending' then return -1 end\n"
	"  back = v[1] == 'queued'\n"
	"elseif v[1] == 'sending' then\n"
	"  if v[2] ~= ARGV[3] then return -1 end\n"
	"  redis.call('HSET', KEYS[1], p .. 'status', 'queued')\n"
	"  if ARGV[4] ~= '1' and tonumber(v[2]) > 0 then\n"
	"    redis.call('HINCRBY', KEYS[1], p .. 'attempts', -1)\n"
	"  end\n"
	"  back = true\n"
	"end\n"
	"redis.call('XACK', KEYS[2], 'workers', ARGV[1])\n"
	"redis.call('XDEL', KEYS[2], ARGV[1])\n"
	"if not back then return 0 end\n"
	"redis.call('XADD', KEYS[2], '*', 'm', ARGV[6], 'r', ARGV[2])\n"
	"return 1\n";

/*
 * bounce
 * KEYS: msg, tl, due, events, supp
 * ARGV: idx action smtp event timeline retention_ms member suppress_reason now_ms
 * action "delayed": timeline only. "failed": delivered|sending|deferred|
 * queued -> failed; a deferred one leaves due; one that was not yet
 * final leaves pending (a "sending" one's ready entry is acknowledged by
 * its worker's record, which finds it no longer sending; a "queued" one's
 * by claim). Returns 1 applied, 0 recipient in another state (nothing
 * changed), -1 no such message or recipient.
 */
static const char store_lua_bounce[] =
	"local p = 'r' .. ARGV[1] .. ':'\n"
	"local v = redis.call('HMGET', KEYS[1], p .. 'status', p .. 'email')\n"
	"if not v[1] then return -1 end\n"
	"if ARGV[2] == 'delayed' then\n"
	"  if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end\n"
	"  return 1\n"
	"end\n"
	"local st = v[1]\n"
	"if st ~= 'delivered' and st ~= 'sending' and st ~= 'deferred' and st ~= 'queued' then\n"
	"  return 0\n"
	"end\n"
	"redis.call('HSET', KEYS[1], p .. 'status', 'failed')\n"
	"if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], p .. 'smtp', ARGV[3]) end\n"
	"if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end\n"
	"if ARGV[4] ~= '' then redis.call('XADD', KEYS[4], '*', 'e', ARGV[4]) end\n"
	"if ARGV[8] ~= '' and v[2] then\n"
	"  redis.call('HSET', KEYS[5], string.lower(v[2]), ARGV[9] .. ':' .. ARGV[8])\n"
	"end\n"
	"if st == 'deferred' then redis.call('ZREM', KEYS[3], ARGV[7]) end\n"
	"if st ~= 'delivered' then\n"
	"  local left = redis.call('HINCRBY', KEYS[1], 'pending', -1)\n"
	"  if left <= 0 then\n"
	"    redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
	"    redis.call('PEXPIRE', KEYS[2], ARGV[6])\n"
	"  end\n"
	"end\n"
	"return 1\n";

/*
 * promote
 * KEYS: due, ready, ready:high
 * ARGV: now_ms max prefix
 * Returns {members taken from due, earliest remaining score or "0"}.
 * Members whose recipient is no longer deferred/scheduled are dropped.
 * Each goes back to its message's lane: ready:high when prio is "high",
 * else (normal, or no prio: stored before lanes) ready.
 */
static const char store_lua_promote[] =
	"local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],\n"
	"  'LIMIT', 0, tonumber(ARGV[2]))\n"
	"for _, m in ipairs(items) do\n"
	"  redis.call('ZREM', KEYS[1], m)\n"
	"  local id, i = string.match(m, '^(.+)/(%d+)$')\n"
	"  if id then\n"
	"    local key = ARGV[3] .. 'msg:' .. id\n"
	"    local f = 'r' .. i .. ':status'\n"
	"    local v = redis.call('HMGET', key, f, 'prio')\n"
	"    local st = v[1]\n"
	"    if st == 'deferred' or st == 'scheduled' then\n"
	"      local lane = KEYS[2]\n"
	"      if v[2] == 'high' then lane = KEYS[3] end\n"
	"      redis.call('HSET', key, f, 'queued')\n"
	"      redis.call('XADD', lane, '*', 'm', id, 'r', i)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
	"local nextv = '0'\n"
	"if nx[2] then nextv = nx[2] end\n"
	"return {#items, nextv}\n";

/*
 * wh_fanout
 * KEYS: events, then whq:<ep> per endpoint
 * ARGV: entry_id event_id now_ms prefix body, then endpoint ids
 * Creates wh:<event_id>/<ep> (unless it exists) due now in the endpoint's
 * own due set, for "default" and for endpoints that still exist (whep:);
 * acks the event entry, which stays in the stream for live readers until
 * trimmed. Returns the number of deliveries that exist for the event.
 */
static const char store_lua_wh_fanout[] =
	"local c = 0\n"
	"for j = 6, #ARGV do\n"
	"  local ep = ARGV[j]\n"
	"  if ep == 'default' or redis.call('EXISTS', ARGV[4] .. 'whep:' .. ep) == 1 then\n"
	"    local m = ARGV[2] .. '/' .. ep\n"
	"    local k = ARGV[4] .. 'wh:' .. m\n"
	"    if redis.call('EXISTS', k) == 0 then\n"
	"      redis.call('HSET', k, 'body', ARGV[5], 'attempts', '0', 'first', ARGV[3])\n"
	"      redis.call('ZADD', KEYS[j - 4], ARGV[3], m)\n"
	"    end\n"
	"    c = c + 1\n"
	"  end\n"
	"end\n"
	"redis.call('XACK', KEYS[1], 'webhooks', ARGV[1])\n"
	"return c\n";

/*
 * wh_claim
 * KEYS: whq:<endpoint>
 * ARGV: now_ms lease_until_ms max prefix
 * Returns a flat list {member, body, attempts, first, ...}; each claimed
 * member's score moves to lease_until. Members without a hash are dropped.
 */
static const char store_lua_wh_claim[] =
	"local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1],\n"
	"  'LIMIT', 0, tonumber(ARGV[3]))\n"
	"local out = {}\n"
	"for _, m in ipairs(items) do\n"
	"  local v = redis.call('HMGET', ARGV[4] .. 'wh:' .. m, 'body', 'attempts', 'first')\n"
	"  if v[1] then\n"
	"    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m)\n"
	"    out[#out + 1] = m\n"
	"    out[#out + 1] = v[1]\n"
	"    out[#out + 1] = v[2] or '0'\n"
	"    out[#out + 1] = v[3] or '0'\n"
	"  else\n"
	"    redis.call('ZREM', KEYS[1], m)\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * wh_done
 * KEYS: whq:<endpoint>
 * ARGV: member prefix
 * Returns 1 when the delivery existed, else 0.
 */
static const char store_lua_wh_done[] =
	"local a = redis.call('ZREM', KEYS[1], ARGV[1])\n"
	"local b = redis.call('DEL', ARGV[2] .. 'wh:' .. ARGV[1])\n"
	"if a + b > 0 then return 1 end\n"
	"return 0\n";

/*
 * wh_retry
 * KEYS: whq:<endpoint>
 * ARGV: member attempts next_ms prefix
 * Returns 1, or 0 when the delivery does not exist (then nothing changes).
 */
static const char store_lua_wh_retry[] =
	"local k = ARGV[4] .. 'wh:' .. ARGV[1]\n"
	"if redis.call('EXISTS', k) == 0 then\n"
	"  redis.call('ZREM', KEYS[1], ARGV[1])\n"
	"  return 0\n"
	"end\n"
	"redis.call('HSET', k, 'attempts', ARGV[2])\n"
	"redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
	"return 1\n";

/*
 * ep_create
 * KEYS: whep:<id>, wheps
 * ARGV: id url secret created, then event types
 * Returns 1, or 0 when the id exists.
 */
static const char store_lua_ep_create[] =
	"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
	"local ev = {}\n"
	"for j = 5, #ARGV do ev[#ev + 1] = cjson.encode(ARGV[j]) end\n"
	"redis.call('HSET', KEYS[1], 'url', ARGV[2], 'secret', ARGV[3],\n"
	"  'events', '[' .. table.concat(ev, ',') .. ']', 'created', ARGV[4])\n"
	"redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])\n"
	"return 1\n";

/*
 * ep_list
 * KEYS: wheps
 * ARGV: prefix max
 * Returns {{id, url, secret, created, {event, ...}}, ...}, oldest first.
 */
static const char store_lua_ep_list[] =
	"local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n"
	"local out = {}\n"
	"for _, id in ipairs(ids) do\n"
	"  local v = redis.call('HMGET', ARGV[1] .. 'whep:' .. id, 'url', 'secret', 'events', 'created')\n"
	"  if v[1] then\n"
	"    local ok, ev = pcall(cjson.decode, v[3] or '[]')\n"
	"    local evs = {}\n"
	"    if ok and type(ev) == 'table' then\n"
	"      for _, e in ipairs(ev) do\n"
	"        if type(e) == 'string' then evs[#evs + 1] = e end\n"
	"      end\n"
	"    end\n"
	"    out[#out + 1] = {id, v[1], v[2] or '', v[4] or '0', evs}\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * ep_delete
 * KEYS: whep:<id>, wheps, whq:<id>
 * ARGV: id prefix
 * Removes the endpoint, its due set and every delivery hash in it.
 * Returns 1, or 0 when the endpoint does not exist.
 */
static const char store_lua_ep_delete[] =
	"local n = redis.call('DEL', KEYS[1])\n"
	"redis.call('ZREM', KEYS[2], ARGV[1])\n"
	"while true do\n"
	"  local ms = redis.call('ZRANGE', KEYS[3], 0, 499)\n"
	"  if #ms == 0 then break end\n"
	"  for _, m in ipairs(ms) do redis.call('DEL', ARGV[2] .. 'wh:' .. m) end\n"
	"  redis.call('ZREM', KEYS[3], unpack(ms))\n"
	"end\n"
	"return n\n";

/*
 * trim
 * KEYS: events
 * ARGV: before_ms
 * XTRIM MINID to the smallest of <before_ms>-0, each group's
 * last-delivered-id + 1 and its oldest pending id: an event a group has
 * not read or not acknowledged stays. Returns how many entries went.
 */
static const char store_lua_trim[] =
	"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
	"local lm, ls = tonumber(ARGV[1]), 0\n"
	"local function lower(id, plus)\n"
	"  if type(id) ~= 'string' then return end\n"
	"  local a, b = string.match(id, '^(%d+)-(%d+)$')\n"
	"  a = tonumber(a); b = tonumber(b)\n"
	"  if b then b = b + plus end\n"
	"  if a and b and (a < lm or (a == lm and b < ls)) then lm = a; ls = b end\n"
	"end\n"
	"for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
	"  local name, pend\n"
	"  for i = 1, #g - 1, 2 do\n"
	"    if g[i] == 'name' then name = g[i + 1]\n"
	"    elseif g[i] == 'pending' then pend = g[i + 1]\n"
	"    elseif g[i] == 'last-delivered-id' then lower(g[i + 1], 1) end\n"
	"  end\n"
	"  if name and pend and pend > 0 then\n"
	"    local p = redis.call('XPENDING', KEYS[1], name)\n"
	"    lower(p[2], 0)\n"
	"  end\n"
	"end\n"
	"if lm <= 0 and ls <= 0 then return 0 end\n"
	"return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', lm, ls))\n";

/*
 * tpl_put
 * KEYS: tpl:<name>, tpls
 * ARGV: name json now_ms
 * Returns 1 when the template is new, 0 when replaced (created is kept).
 */
static const char store_lua_tpl_put[] =
	"local new = redis.call('EXISTS', KEYS[1]) == 0\n"
	"if new then redis.call('HSET', KEYS[1], 'created', ARGV[3]) end\n"
	"redis.call('HSET', KEYS[1], 'json', ARGV[2], 'updated', ARGV[3])\n"
	"redis.call('ZADD', KEYS[2], 0, ARGV[1])\n"
	"if new then return 1 end\n"
	"return 0\n";

/*
 * tpl_del
 * KEYS: tpl:<name>, tpls
 * ARGV: name
 * Returns 1, or 0 when absent.
 */
static const char store_lua_tpl_del[] =
	"local n = redis.call('DEL', KEYS[1])\n"
	"redis.call('ZREM', KEYS[2], ARGV[1])\n"
	"return n\n";

/*
 * tpl_list
 * KEYS: tpls (all scores 0, so ZRANGE is sorted by name)
 * ARGV: prefix max
 * Returns a flat list {name, json, created, updated, ...}.
 */
static const char store_lua_tpl_list[] =
	"local names = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n"
	"local out = {}\n"
	"for _, n in ipairs(names) do\n"
	"  local v = redis.call('HMGET', ARGV[1] .. 'tpl:' .. n, 'json', 'created', 'updated')\n"
	"  if v[1] then\n"
	"    out[#out + 1] = n; out[#out + 1] = v[1]\n"
	"    out[#out + 1] = v[2] or '0'; out[#out + 1] = v[3] or '0'\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * key_create
 * KEYS: key:<hash>, keyname:<name>, keys
 * ARGV: name hash now_ms
 * Returns 1, or 0 when the name (or the hash) exists.
 */
static const char store_lua_key_create[] =
	"if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then\n"
	"  return 0\n"
	"end\n"
	"redis.call('HSET', KEYS[1], 'name', ARGV[1], 'created', ARGV[3], 'last_used', '0')\n"
	"redis.call('SET', KEYS[2], ARGV[2])\n"
	"redis.call('SADD', KEYS[3], ARGV[1])\n"
	"return 1\n";

/*
 * key_revoke
 * KEYS: keyname:<name>, keys
 * ARGV: name prefix
 * Deletes the key, its name and its rate bucket. Returns 1, or 0 when absent.
 */
static const char store_lua_key_revoke[] =
	"local h = redis.call('GET', KEYS[1])\n"
	"redis.call('SREM', KEYS[2], ARGV[1])\n"
	"if not h then return 0 end\n"
	"redis.call('DEL', ARGV[2] .. 'key:' .. h, KEYS[1], ARGV[2] .. 'rl:' .. ARGV[1])\n"
	"return 1\n";

/*
 * key_list
 * KEYS: keys
 * ARGV: prefix
 * Returns a flat list {name, hash, created, last_used, ...} sorted by name.
 */
static const char store_lua_key_list[] =
	"local names = redis.call('SMEMBERS', KEYS[1])\n"
	"table.sort(names)\n"
	"local out = {}\n"
	"for _, n in ipairs(names) do\n"
	"  local h = redis.call('GET', ARGV[1] .. 'keyname:' .. n)\n"
	"  if h then\n"
	"    local v = redis.call('HMGET', ARGV[1] .. 'key:' .. h, 'created', 'last_used')\n"
	"    out[#out + 1] = n; out[#out + 1] = h\n"
	"    out[#out + 1] = v[1] or '0'; out[#out + 1] = v[2] or '0'\n"
	"  end\n"
	"end\n"
	"return out\n";

/*
 * The token bucket shared by auth and ratelimit: rl:<tenant> is a hash
 * {tokens, ts}; it refills at rate tokens/s up to burst, and expires once
 * it would be full again. Returns 0 when a token was taken, else the ms
 * until one is available. rate <= 0: no limit, nothing stored.
 */
#define STORE_LUA_BUCKET \
	"local function bucket(k, now, rate, burst)\n" \
	"  if not rate or rate <= 0 then return 0 end\n" \
	"  if not burst or burst < 1 then burst = 1 end\n" \
	"  local v = redis.call('HMGET', k, 'tokens', 'ts')\n" \
	"  local tokens, ts = tonumber(v[1]), tonumber(v[2])\n" \
	"  if not tokens or not ts then tokens = burst; ts = now end\n" \
	"  if now > ts then\n" \
	"    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n" \
	"    ts = now\n" \
	"  end\n" \
	"  local retry = 0\n" \
	"  if tokens >= 1 then\n" \
	"    tokens = tokens - 1\n" \
	"  else\n" \
	"    retry = math.ceil((1 - tokens) * 1000 / rate)\n" \
	"    if retry < 1 then retry = 1 end\n" \
	"  end\n" \
	"  redis.call('HSET', k, 'tokens', string.format('%.6f', tokens), 'ts', string.format('%d', ts))\n" \
	"  redis.call('PEXPIRE', k, math.ceil(burst * 1000 / rate) + 1000)\n" \
	"  return retry\n" \
	"end\n"

/*
 * auth
 * KEYS: key:<hash>
 * ARGV: now_ms rate burst prefix
 * Returns nil when no such key, else {name, retry_after_ms}; last_used is
 * refreshed when older than a minute.
 */
static const char store_lua_auth[] =
	STORE_LUA_BUCKET
	"local v = redis.call('HMGET', KEYS[1], 'name', 'last_used')\n"
	"if not v[1] then return false end\n"
	"local now = tonumber(ARGV[1])\n"
	"local lu = tonumber(v[2] or '0') or 0\n"
	"if now - lu >= 60000 then redis.call('HSET', KEYS[1], 'last_used', ARGV[1]) end\n"
	"local r = bucket(ARGV[4] .. 'rl:' .. v[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
	"return {v[1], r}\n";

/*
 * ratelimit
 * KEYS: rl:<tenant>
 * ARGV: now_ms rate burst
 * Returns retry_after_ms (0: allowed).
 */
static const char store_lua_ratelimit[] =
	STORE_LUA_BUCKET
	"return bucket(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))\n";

/*
 * view
 * KEYS: msg
 * Returns the message hash without the MIME body, as HGETALL would
 * ({field, value, ...}); {} when the message does not exist.
 */
static const char store_lua_view[] =
	"local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '-1')\n"
	"if not n or n < 0 then return {} end\n"
	"if n > 1000 then return redis.error_reply('ERR recipient count') end\n"
	"local f = {'id', 'from', 'subject', 'metadata', 'tags', 'created', 'send_at', 'n', 'prio'}\n"
	"local names = {'email', 'kind', 'status', 'attempts', 'smtp'}\n"
	"for i = 0, n - 1 do\n"
	"  for _, x in ipairs(names) do f[#f + 1] = 'r' .. i .. ':' .. x end\n"
	"end\n"
	"local v = redis.call('HMGET', KEYS[1], unpack(f))\n"
	"local out = {}\n"
	"for i = 1, #f do\n"
	"  if v[i] then out[#out + 1] = f[i]; out[#out + 1] = v[i] end\n"
	"end\n"
	"return out\n";

/*
 * cancel
 * KEYS: msg, tl, due
 * ARGV: id timeline retention_ms
 * Recipients queued, scheduled or deferred become "canceled" (their ready
 * entries, on either lane, are dropped by claim; their due members here). Returns how many,
 * or -1 when the message does not exist.
 */
static const char store_lua_cancel[] =
	"local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '-1')\n"
	"if not n or n < 0 then return -1 end\n"
	"local c = 0\n"
	"for i = 0, n - 1 do\n"
	"  local f = 'r' .. i .. ':status'\n"
	"  local st = redis.call('HGET', KEYS[1], f)\n"
	"  if st == 'queued' or st == 'scheduled' or st == 'deferred' then\n"
	"    redis.call('HSET', KEYS[1], f, 'canceled')\n"
	"    redis.call('ZREM', KEYS[3], ARGV[1] .. '/' .. i)\n"
	"    c = c + 1\n"
	"  end\n"
	"end\n"
	"if c > 0 then\n"
	"  if ARGV[2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[2]) end\n"
	"  local left = redis.call('HINCRBY', KEYS[1], 'pending', -c)\n"
	"  if left <= 0 then\n"
	"    redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
	"    redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
	"  end\n"
	"end\n"
	"return c\n";

#endif
