-- wrk script: events spread over the touchpoints of a collector pool, at random
-- (POST /v1/touchpoints/tp-<n>/events, or .../events:batch with BATCH=1). TOUCHPOINTS (env)
-- says how many the pool serves; EVENTS_PER_BATCH how many NDJSON lines a batch holds.
local touchpoints = tonumber(os.getenv("TOUCHPOINTS") or "1")
local batch = os.getenv("BATCH") == "1"
local per_batch = tonumber(os.getenv("EVENTS_PER_BATCH") or "1000")
local event = '{"type":"survey","metric":"nps","score":9,"sessionId":"s-7f3a9c"}'
local body = event
local content_type = "application/json"
local suffix = "/events"
if batch then
  local lines = {}
  for i = 1, per_batch do lines[i] = event end
  body = table.concat(lines, "\n") .. "\n"
  content_type = "application/x-ndjson"
  suffix = "/events:batch"
end
local non_2xx = 0

request = function()
  local path = "/v1/touchpoints/tp-" .. math.random(0, touchpoints - 1) .. suffix
  return wrk.format("POST", path, { ["Content-Type"] = content_type }, body)
end

response = function(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non_2xx_responses_sampled_thread_local: %d\n", non_2xx))
end
