-- lib/project.lua - not a script: the keys of a project, included by the scripts that
-- reach a message's project's data (record, bounce) or its ready streams (promote)
-- The project "default" (and a record without a project: data written
-- before projects existed) keeps the original keys, "<prefix>supp"; any
-- other project P has its own, "<prefix>prj:<P>:supp". Mirrors
-- st_project_prefix in store_conn.c.
-- project_ready(lane, set, p, made): the ready stream of project p on the
-- lane whose own stream is lane and whose project set is set: lane for
-- "default" (or none, or a name that is not one), else lane .. ":p:" ..
-- p (st_stream_key). The first time a call of the script meets it (made
-- remembers), p goes into set and, when that is new, the stream and its
-- group "workers" are made, so the workers' reads find it.

local function project_prefix(prefix, p)
  if not p or p == '' or p == 'default' then return prefix end
  return prefix .. 'prj:' .. p .. ':'
end

local function project_ready(lane, set, p, made)
  if not p or p == '' or p == 'default' or #p > 64 or not string.match(p, '^[%w_.-]+$') then
    return lane
  end
  local k = lane .. ':p:' .. p
  if not made[k] then
    made[k] = true
    if redis.call('SADD', set, p) == 1 then
      pcall(redis.call, 'XGROUP', 'CREATE', k, 'workers', '0', 'MKSTREAM')
    end
  end
  return k
end
