-- wrk script: NDJSON batches of EVENTS_PER_BATCH events per POST /v1/events:batch.
-- events/s = requests/s × EVENTS_PER_BATCH (all events are valid; the load script also checks
-- cx_events_received_total).
local events_per_batch = tonumber(os.getenv("EVENTS_PER_BATCH") or "1000")

local lines = {}
local outcomes = { "completed", "abandoned", "error" }
for i = 1, events_per_batch do
  if i % 2 == 0 then
    lines[#lines + 1] = string.format('{"type":"survey","metric":"nps","score":%d}', i % 11)
  else
    lines[#lines + 1] = string.format(
      '{"type":"interaction","outcome":"%s","waitSeconds":%d.5,"handleSeconds":%d}',
      outcomes[(i % 3) + 1], i % 90, i % 600)
  end
end

wrk.method = "POST"
wrk.path = "/v1/events:batch"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.body = table.concat(lines, "\n") .. "\n"

done = function(summary, latency, requests)
  io.write(string.format("events_per_batch: %d\n", events_per_batch))
  io.write(string.format("batch_bytes: %d\n", #wrk.body))
end
