-- wrk script for `make bench`: every request GETs a random line of the paths file given
-- after `--`, with the API key from BENCH_KEY; at the end one JSON line of results.
-- wrk (C, epoll) instead of a Python client: at 8 clients a threaded Python load generator
-- spent more time waiting for its own GIL than the service spent answering.
local paths = {}
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY") or ""

function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(tonumber(args[2] or "1"))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "errors": %d, "non_2xx": %d, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "seconds": %.3f}\n',
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end
