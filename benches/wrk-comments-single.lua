-- wrk script: one survey answer per POST /v1/events, shaped as benches/wrk-single-event.lua sends
-- it ({"type":"survey","metric":"nps","score":N,"sessionId":"s-7f3a9c"}), N cycling over 0-10;
-- with COMMENTS=1 (env) each also carries a ~300-byte comment from wrk-comments-table.lua, the
-- comment changing from request to request. Both modes send from the same table of pre-built
-- requests through the same request() function, so wrk does the same work per request and only
-- the body differs. Prints the 2xx/non-2xx counts of all threads, and the first non-2xx answer.
local comments_on = os.getenv("COMMENTS") == "1"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local comments = dofile(here .. "wrk-comments-table.lua")

local requests = {}
local count = 0
local index = 0
non_2xx = 0
first_bad = nil

init = function(args)
  -- Built here rather than at load: wrk sets the Host header just before calling init.
  for i = 1, #comments do
    local comment = ""
    if comments_on then
      comment = ',"comment":"' .. comments[i].text .. '"'
    end
    local body = string.format('{"type":"survey","metric":"nps","score":%d,"sessionId":"s-7f3a9c"%s}',
      (i - 1) % 11, comment)
    requests[i] = wrk.format("POST", "/v1/events", { ["Content-Type"] = "application/json" }, body)
  end
  count = #requests
  index = math.random(count) - 1
end

request = function()
  index = index % count + 1
  return requests[index]
end

response = function(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
    if first_bad == nil then
      -- The request last sent by this thread: with several connections, not always this one's.
      first_bad = status .. " " .. string.sub(body or "", 1, 400) ..
        " (last request sent: " .. string.sub(requests[index] or "", 1, 700) .. ")"
    end
  end
end

local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, requests_made)
  local bad = 0
  local first = nil
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
    first = first or thread:get("first_bad")
  end
  io.write(string.format("responses_2xx: %d\n", summary.requests - bad))
  io.write(string.format("responses_non_2xx: %d\n", bad))
  if first then
    io.write("first_non_2xx: " .. first .. "\n")
  end
end
