-- lib/batch.lua - not a script: the loop of the batch scripts (claim, record), included by them
-- batch_run(name, fn, n) calls fn(i) for i = 1..n, each under pcall, and
-- returns their results in order: what fn returned, or an error reply for
-- an item whose command failed (the others still run; nothing is rolled
-- back, so the caller's documentation says what a half-done item leaves).
-- batch_ack(keys, ids) XACKs and XDELs ids[lane] on keys[lane] (group
-- "workers") for both lanes, one call of each per lane.

local function batch_run(name, fn, n)
  local out = {}
  for i = 1, n do
    local ok, r = pcall(fn, i)
    if ok then
      out[i] = r
    elseif type(r) == 'table' and r.err then
      out[i] = r
    else
      out[i] = { err = 'ERR ' .. name .. ': ' .. tostring(r) }
    end
  end
  return out
end

local function batch_ack(keys, ids)
  for lane = 1, 2 do
    if #ids[lane] > 0 then
      redis.call('XACK', keys[lane], 'workers', unpack(ids[lane]))
      redis.call('XDEL', keys[lane], unpack(ids[lane]))
    end
  end
end
