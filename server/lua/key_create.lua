-- key_create.lua - store_conn.c's SC_KEY_CREATE
-- KEYS: key:<hash>, keyname:<name>, keys
-- ARGV: name hash now_ms project scope allow
-- Returns 1, or 0 when the name (or the hash) exists. allow is the
-- normalized comma list of CIDR networks, "" for none.

if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'created', ARGV[3], 'last_used', '0',
  'project', ARGV[4], 'scope', ARGV[5], 'allow', ARGV[6])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
