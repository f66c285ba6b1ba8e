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
 * enqueue
 * KEYS: msg, tl, ready, due
 * ARGV: id created expires send_at from mail_from subject mime metadata tags
 *       timeline n, then email kind per recipient
 * Returns 1, or 0 when the message id exists already.
 */
static const char store_lua_enqueue[] =
	"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
	"local n = tonumber(ARGV[12])\n"
	"local sched = tonumber(ARGV[4]) > 0\n"
	"local st = 'queued'\n"
	"if sched then st = 'scheduled' end\n"
	"local f = {'id', ARGV[1], 'created', ARGV[2], 'expires', ARGV[3],\n"
	"  'send_at', ARGV[4], 'from', ARGV[5], 'mail_from', ARGV[6],\n"
	"  'subject', ARGV[7], 'mime', ARGV[8], 'metadata', ARGV[9],\n"
	"  'tags', ARGV[10], 'n', ARGV[12], 'pending', ARGV[12]}\n"
	"for i = 0, n - 1 do\n"
	"  local p = 'r' .. i .. ':'\n"
	"  local k = #f\n"
	"  f[k + 1] = p .. 'email'; f[k + 2] = ARGV[13 + 2 * i]\n"
	"  f[k + 3] = p .. 'kind'; f[k + 4] = ARGV[14 + 2 * i]\n"
	"  f[k + 5] = p .. 'status'; f[k + 6] = st\n"
	"  f[k + 7] = p .. 'attempts'; f[k + 8] = '0'\n"
	"  f[k + 9] = p .. 'smtp'; f[k + 10] = ''\n"
	"end\n"
	"redis.call('HSET', KEYS[1], unpack(f))\n"
	"if ARGV[11] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[11]) end\n"
	"for i = 0, n - 1 do\n"
	"  if sched then\n"
	"    redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1] .. '/' .. i)\n"
	"  else\n"
	"    redis.call('XADD', KEYS[3], '*', 'm', ARGV[1], 'r', tostring(i))\n"
	"  end\n"
	"end\n"
	"return 1\n";

/*
 * claim
 * KEYS: msg, ready
 * ARGV: entry_id idx
 * A deliverable recipient ("queued", or "sending" when taken over from a
 * dead worker) becomes "sending" with attempts + 1; returns {rcpt,
 * mail_from, mime, metadata, tags, attempts, created, expires}. Anything
 * else (terminal, canceled, message gone): ack + delete the entry, nil.
 */
static const char store_lua_claim[] =
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
 * KEYS: msg, tl, ready, due, events
 * ARGV: entry_id idx status next_ms smtp event timeline attempt retention_ms member
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
 * promote
 * KEYS: due, ready
 * ARGV: now_ms max prefix
 * Returns {members taken from due, earliest remaining score or "0"}.
 * Members whose recipient is no longer deferred/scheduled are dropped.
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
	"    local st = redis.call('HGET', key, f)\n"
	"    if st == 'deferred' or st == 'scheduled' then\n"
	"      redis.call('HSET', key, f, 'queued')\n"
	"      redis.call('XADD', KEYS[2], '*', 'm', id, 'r', i)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local nx = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
	"local nextv = '0'\n"
	"if nx[2] then nextv = nx[2] end\n"
	"return {#items, nextv}\n";

/*
 * wh_fanout
 * KEYS: events, whq
 * ARGV: entry_id event_id now_ms prefix body, then endpoint ids
 * Creates wh:<event_id>/<ep> (unless it exists) due now; acks and deletes
 * the event entry. Returns the number of endpoints.
 */
static const char store_lua_wh_fanout[] =
	"for j = 6, #ARGV do\n"
	"  local m = ARGV[2] .. '/' .. ARGV[j]\n"
	"  local k = ARGV[4] .. 'wh:' .. m\n"
	"  if redis.call('EXISTS', k) == 0 then\n"
	"    redis.call('HSET', k, 'body', ARGV[5], 'attempts', '0', 'first', ARGV[3])\n"
	"    redis.call('ZADD', KEYS[2], ARGV[3], m)\n"
	"  end\n"
	"end\n"
	"redis.call('XACK', KEYS[1], 'webhooks', ARGV[1])\n"
	"redis.call('XDEL', KEYS[1], ARGV[1])\n"
	"return #ARGV - 5\n";

/*
 * wh_claim
 * KEYS: whq
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
 * KEYS: whq
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
 * KEYS: whq
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
 * view
 * KEYS: msg
 * Returns the message hash without the MIME body, as HGETALL would
 * ({field, value, ...}); {} when the message does not exist.
 */
static const char store_lua_view[] =
	"local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '-1')\n"
	"if not n or n < 0 then return {} end\n"
	"if n > 1000 then return redis.error_reply('ERR recipient count') end\n"
	"local f = {'id', 'from', 'subject', 'metadata', 'tags', 'created', 'send_at', 'n'}\n"
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
 * entries are dropped by claim, their due members here). Returns how many,
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
