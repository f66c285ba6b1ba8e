-- abandon.lua - store_conn.c's SC_ABANDON: settle an accept whose reply was lost
-- KEYS: msg (msg:<id> of the batch's first message), abandoned (abandoned:<id>)
-- ARGV: ttl_ms
-- Run by store_messages.c on a new connection after the enqueue script's
-- reply did not come (timeout, broken connection). Returns 1 when msg
-- exists: the enqueue ran and stored the batch (it is all or nothing).
-- Otherwise sets abandoned (PX ttl_ms) and returns 0: nothing is stored,
-- and never will be, because enqueue.lua refuses ({5, ""}) to run for a
-- batch whose first id is marked. Redis runs scripts one at a time, so the
-- enqueue - wherever it still is (queued in a stalled Redis, in a socket
-- buffer of the old connection) - either ran before this script (1) or
-- runs after it and stores nothing (0); no Redis or host clock is trusted.
-- ttl_ms outlives any copy of the command still on its way (TCP gives up
-- within minutes).

if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 0
