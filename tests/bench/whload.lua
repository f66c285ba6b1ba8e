-- whload.lua - wrk script for the receiver's own capacity (suite.py): POST
-- a small message.delivered body with a webhook-id no other request uses,
-- as txmail's dispatcher would (unsigned: whrecv runs without --secret).
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  n = 0
end

function request()
  n = n + 1
  local id = string.format("evt_load_%d_%d", tid, n)
  local body = '{"id":"' .. id .. '","type":"message.delivered","data":{"message_id":"msg_' .. id .. '"}}'
  return wrk.format("POST", "/webhook", { ["Content-Type"] = "application/json",
                                          ["webhook-id"] = id, ["webhook-timestamp"] = "1700000000" }, body)
end
