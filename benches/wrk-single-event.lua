-- wrk script: one survey answer per POST /v1/events (single-event throughput).
-- The baseline server ignores path and body, so the same script measures both.
wrk.method = "POST"
wrk.path = "/v1/events"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"survey","metric":"nps","score":9,"sessionId":"s-7f3a9c"}'

local non_2xx = 0

response = function(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non_2xx_responses_sampled_thread_local: %d\n", non_2xx))
end

-- WRK_DELAY_MS: each connection waits that long before each request (a paced load: 10
-- connections and 10 ms make about 1,000 requests/s).
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then
  delay = function()
    return pace
  end
end
