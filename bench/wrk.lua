-- wrk script for bench/run.py: cycles through the request pool in bench/requests.txt (blocks
-- separated by a line "%%", the same pool bench-loadgen sends), and prints one JSON line.
-- Usage: wrk ... -s bench/wrk.lua URL -- /path/to/requests.txt
local pool = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(args[1] or "bench/requests.txt", "r"))
  local text = f:read("*a")
  f:close()
  for block in (text .. "\n%%\n"):gmatch("(.-)\n%%%%\n") do
    block = block:gsub("^\n+", ""):gsub("\n+$", "")
    if #block > 0 then
      n = n + 1
      pool[n] = block:gsub("\n", "\r\n") .. "\r\n\r\n"
    end
  end
  assert(n > 0, "empty request pool")
end

function request()
  i = i % n + 1
  return pool[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
