-- lib/project.lua - not a script: the key prefix of a project, included by the scripts that
-- reach a message's project's data (record, bounce)
-- The project "default" (and a record without a project: data written
-- before projects existed) keeps the original keys, "<prefix>supp"; any
-- other project P has its own, "<prefix>prj:<P>:supp". Mirrors
-- st_project_prefix in store_conn.c.

local function project_prefix(prefix, p)
  if not p or p == '' or p == 'default' then return prefix end
  return prefix .. 'prj:' .. p .. ':'
end
