-- lib/batch.lua - not a script: the loop of the batch scripts (claim, record), included by them
-- batch_run(name, fn, n) calls fn(i) for i = 1..n, each under pcall, and
-- returns their results in order: what fn returned, or an error reply for
-- an item whose command failed (the others still run; nothing is rolled
-- back, so the caller's documentation says what a half-done item leaves).
-- batch_mark(ids, k, id) puts id on the list of stream k; batch_ack(keys,
-- base, ids) XACKs and XDELs each list ids[k] on keys[base + k] (group
-- "workers"), one call of each per stream.

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

local function batch_mark(ids, k, id)
  local l = ids[k]
  if not l then
    l = {}
    ids[k] = l
  end
  l[#l + 1] = id
end

local function batch_ack(keys, base, ids)
  for k, l in pairs(ids) do
    redis.call('XACK', keys[base + k], 'workers', unpack(l))
    redis.call('XDEL', keys[base + k], unpack(l))
  end
end
