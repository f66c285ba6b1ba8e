-- unique.lua - wrk script of the benches: POST /v1/messages with a body of
-- about 1 KB that no other request repeats (a verification code, the
-- thread and the request number in subject and text), so nothing along the
-- way (idempotency, a cache, Redis) can shortcut a repeated request.
--
--   wrk -t T -c C -d D -s unique.lua URL -- KEY T [LIMIT [PRIORITY [IDFILE [WAIT]]]]
--
-- KEY: the bearer key. T: wrk's thread count (each thread takes its share
-- of LIMIT). LIMIT (0 or absent: none): the POSTs all threads send
-- together; a thread that has sent its share sends GET /healthz instead
-- (a request must go out) and stops once every one of its POSTs has been
-- answered (or WAIT seconds, default 12: more than wrk's --timeout, after
-- its last POST went out, in case one is never answered), and then
-- creates IDFILE.done.<thread> (with LIMIT, IDFILE is needed: wrk itself
-- runs for its whole -d, so the caller stops it once every thread is done).
-- PRIORITY: "high" or "normal" ("-": the default). IDFILE ("-": none):
-- the id of every message answered 202, one a line, which is what the
-- caller counts as accepted. At the end a line
--   BENCH posts=N accepted=N refused=N duration_us=N p50_us=N p90_us=N p99_us=N p999_us=N max_us=N
-- is printed for the caller to read (statuses other than 202 and 200 are
-- refused POSTs).

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  key = args[1] or "bench-key"
  idfile = args[5] or "-"
  local nthreads = tonumber(args[2]) or 1
  local limit = tonumber(args[3]) or 0
  prio = args[4]
  if prio == "-" then prio = nil end
  wait = tonumber(args[6]) or 12
  ids = {}
  last_post = 0
  -- wrk calls the first thread's request() once before the run, to check
  -- what it returns (script_verify_request): that request is never sent.
  probe = (tid == 0)
  if limit > 0 then
    share = math.floor(limit / nthreads)
    if tid < limit % nthreads then share = share + 1 end
  else
    share = -1
  end
  sent, accepted, refused = 0, 0, 0
  post_headers = { ["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer " .. key }
  health = wrk.format("GET", "/healthz", {})
  pad = string.rep("Enter it within ten minutes; if you did not ask for it, ignore this mail. ", 10)
end

function request()
  if probe then
    probe = false
    return health
  end
  if share >= 0 and sent >= share then
    return health
  end
  sent = sent + 1
  if share >= 0 and sent >= share then last_post = os.time() end
  local code = string.format("%06d", (sent * 7919 + tid * 104729) % 1000000)
  local extra = ""
  if prio then extra = ',"priority":"' .. prio .. '"' end
  local body = string.format(
    '{"from":"Bench <bench@example.com>","to":"user%d@example.com",' ..
    '"subject":"Your code is %s","text":"Your verification code is %s (t%d r%d).\\n%s"%s}',
    sent % 1000, code, code, tid, sent, pad, extra)
  return wrk.format("POST", "/v1/messages", post_headers, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
    local id = string.match(body, '"id":"([^"]+)"')
    if id then ids[#ids + 1] = id end
  elseif status ~= 200 then
    refused = refused + 1
  end
  if share >= 0 and not finished and (accepted + refused >= share or
                                      (sent >= share and os.time() - last_post > wait)) then
    -- wrk runs for its -d whatever the threads do: the caller waits for
    -- every thread's mark and then stops wrk with SIGINT.
    finished = true
    if idfile ~= "-" then
      local f = io.open(idfile .. ".done." .. tid, "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local posts, acc, ref = 0, 0, 0
  local out = nil
  for _, t in ipairs(threads) do
    posts = posts + t:get("sent")
    acc = acc + t:get("accepted")
    ref = ref + t:get("refused")
    local path = t:get("idfile")
    if path and path ~= "-" then
      out = out or io.open(path, "w")
      for _, id in ipairs(t:get("ids")) do out:write(id, "\n") end
    end
  end
  if out then out:close() end
  io.write(string.format(
    "BENCH posts=%d accepted=%d refused=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    posts, acc, ref, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
