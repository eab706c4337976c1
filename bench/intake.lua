-- wrk script of the intake path: POST /api/patients/{patient_id}/service_requests with a bearer token and an
-- api key (README, "A first command"). Every request names a patient id of its own, so every request is a new
-- command and creates a job: intake recognises a repeated create by its fingerprint (patient id + body,
-- api/src/routes/service_requests.rs `create`), never by the id the server makes.
--
-- Arguments (after `--`): <token> <api key> <uuid prefix "xxxxxxxx-xxxx-4xxx-"> [max responses per thread]
-- The prefix is random per run (scripts/bench.sh), so no two runs send the same patient id; the last 16 hex
-- digits are the thread's number and its request counter. With a maximum, each thread stops after that many
-- responses (the end-to-end path queues a fixed number of commands this way).

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local token, key, prefix, max_responses
local counter, responses, unexpected = 0, 0, 0
local body = '{"category":"laboratory_procedure","code":"LAB-001","program_id":"4bee8fab-2a99-43ce-9dc5-c0adf13141bf"}'

function init(args)
  token, key, prefix = args[1], args[2], args[3]
  max_responses = tonumber(args[4] or "0")
end

function request()
  counter = counter + 1
  local path = string.format("/api/patients/%s%04x-%012x/service_requests", prefix, thread_no, counter)
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["api-key"] = key,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 202 then
    unexpected = unexpected + 1
  end
  if max_responses > 0 and responses >= max_responses then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local not_202 = 0
  for _, thread in ipairs(threads) do
    not_202 = not_202 + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f unexpected_status=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    not_202, e.connect + e.read + e.write + e.timeout))
end
