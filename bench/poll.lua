-- wrk script of the poll path: GET /Jobs/{id} with a bearer token (README, "A first command"). The job is a
-- finished one, so the answer is its outcome (303 See Other to the service request it created).
--
-- Arguments (after `--`): <token> <job id>

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local token, job
local unexpected = 0

function init(args)
  token, job = args[1], args[2]
end

function request()
  return wrk.format("GET", "/Jobs/" .. job, { ["Authorization"] = "Bearer " .. token })
end

function response(status, headers, body)
  if status ~= 303 and status ~= 200 then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f unexpected_status=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    bad, e.connect + e.read + e.write + e.timeout))
end
