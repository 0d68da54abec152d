-- wrk script: POSTs the OTLP/HTTP export request in BODY_FILE to /v1/logs, again and again (the
-- OpenTelemetry Collector's own ceiling). CONTENT_TYPE: application/x-protobuf (the default) or
-- application/json.
local file = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE is not set"), "rb"))
wrk.method = "POST"
wrk.path = "/v1/logs"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/x-protobuf"
wrk.body = file:read("*a")
file:close()

local non_2xx = 0

response = function(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non_2xx_responses_sampled_thread_local: %d\n", non_2xx))
end
