-- wrk script: POSTs the OTLP/HTTP export request in BODY_FILE to /v1/logs, again and again (the
-- OpenTelemetry Collector's own ceiling). CONTENT_TYPE: application/x-protobuf (the default) or
-- application/json.
local file = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE is not set"), "rb"))
wrk.method = "POST"
wrk.path = "/v1/logs"
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/x-protobuf"
wrk.body = file:read("*a")
file:close()

