-- wrk script: NDJSON batches of EVENTS_PER_BATCH events per POST /v1/events:batch, the events of
-- benches/wrk-ndjson-batch.lua (nps answers and interactions, alternating); with COMMENTS=1 (env)
-- every event also carries a ~300-byte comment from wrk-comments-table.lua, rotating within a
-- batch and from one batch to the next (VARIANTS different bodies). Both modes go through the
-- same request() function. The collector answers 200 with {"accepted":..,"rejected":..} even when
-- some events are refused, so the answers are read: rejected events count as failures. Prints
-- the 2xx/non-2xx counts of all threads, the events the 2xx answers accepted and rejected, and
-- the first failing answer.
local comments_on = os.getenv("COMMENTS") == "1"
local events_per_batch = tonumber(os.getenv("EVENTS_PER_BATCH") or "1000")
local variants = 4
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local comments = dofile(here .. "wrk-comments-table.lua")

local outcomes = { "completed", "abandoned", "error" }
local requests = {}
local bytes = {}
local index = 0
non_2xx = 0
accepted = 0
rejected = 0
first_bad = nil

local function body(variant)
  local lines = {}
  for i = 1, events_per_batch do
    local comment = ""
    if comments_on then
      comment = ',"comment":"' .. comments[(i + 7 * variant) % #comments + 1].text .. '"'
    end
    if i % 2 == 0 then
      lines[i] = string.format('{"type":"survey","metric":"nps","score":%d%s}', i % 11, comment)
    else
      lines[i] = string.format(
        '{"type":"interaction","outcome":"%s","waitSeconds":%d.5,"handleSeconds":%d%s}',
        outcomes[(i % 3) + 1], i % 90, i % 600, comment)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

init = function(args)
  -- Built here rather than at load: wrk sets the Host header just before calling init.
  for v = 1, variants do
    local text = body(v)
    bytes[v] = #text
    requests[v] = wrk.format("POST", "/v1/events:batch",
      { ["Content-Type"] = "application/x-ndjson" }, text)
  end
  index = math.random(variants) - 1
end

request = function()
  index = index % variants + 1
  return requests[index]
end

response = function(status, headers, answer)
  answer = answer or ""
  local ok = status >= 200 and status <= 299
  if ok then
    accepted = accepted + (tonumber(string.match(answer, '"accepted"%s*:%s*(%d+)')) or 0)
    local refused = tonumber(string.match(answer, '"rejected"%s*:%s*(%d+)')) or 0
    rejected = rejected + refused
    ok = refused == 0
  else
    non_2xx = non_2xx + 1
  end
  if not ok and first_bad == nil then
    first_bad = status .. " " .. string.sub(answer, 1, 600)
  end
end

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, requests_made)
  local bad, events_accepted, events_rejected, first = 0, 0, 0, nil
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
    events_accepted = events_accepted + (thread:get("accepted") or 0)
    events_rejected = events_rejected + (thread:get("rejected") or 0)
    first = first or thread:get("first_bad")
  end
  local size = 0
  for v = 1, variants do size = size + #body(v) end
  io.write(string.format("events_per_batch: %d\n", events_per_batch))
  io.write(string.format("batch_bytes: %d\n", size / variants))
  io.write(string.format("responses_2xx: %d\n", summary.requests - bad))
  io.write(string.format("responses_non_2xx: %d\n", bad))
  io.write(string.format("events_accepted: %d\n", events_accepted))
  io.write(string.format("events_rejected: %d\n", events_rejected))
  if first then
    io.write("first_failure: " .. first .. "\n")
  end
end
