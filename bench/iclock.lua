-- wrk script for bench/run.py: ZKTeco terminals polling or uploading punches.
--
--   wrk -t1 -c32 -d10s --latency -s bench/iclock.lua URL -- MODE PREFIX DEVICES WIDTH [RECORDS BASE THREADS]
--
-- MODE "poll":   GET /iclock/getrequest?SN=<PREFIX><n>, the DEVICES serial numbers in turn
--                (n zero-padded to WIDTH digits).
-- MODE "ingest": POST /iclock/cdata?SN=..&table=ATTLOG&Stamp=9999 with RECORDS 10-field
--                ATTLOG lines.  Every record of every request has its own time (BASE, in
--                seconds since the epoch, plus a running number), so none is a re-send.
--                THREADS is wrk's -t: request k of thread t is number k*THREADS+t overall.
--                Replies "OK: n" add n to the acknowledged records; any other reply is
--                counted as refused.
-- Every request says "Connection: close", as terminals do.  done() prints one line,
-- "BENCH-RESULT {json}", for bench/run.py.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

local headers = {
  ["User-Agent"] = "iClock Proxy/1.09",
  ["Accept"] = "*/*",
  ["Connection"] = "close",
}
local post_headers = {
  ["User-Agent"] = "iClock Proxy/1.09",
  ["Accept"] = "*/*",
  ["Connection"] = "close",
  ["Content-Type"] = "text/plain",
}

function init(args)
  mode = args[1]
  prefix = args[2]
  devices = tonumber(args[3])
  width = tonumber(args[4])
  sequence = 0
  acked = 0
  refused = 0
  if mode == "poll" then
    polls = {}
    for n = 0, devices - 1 do
      local path = string.format("/iclock/getrequest?SN=%s%0" .. width .. "d", prefix, n)
      polls[n + 1] = wrk.format("GET", path, headers)
    end
    response = nil -- wrk then skips parsing replies
  else
    records = tonumber(args[5])
    base = tonumber(args[6])
    thread_count = tonumber(args[7])
  end
end

function request()
  if mode == "poll" then
    sequence = sequence % devices + 1
    return polls[sequence]
  end
  local number = sequence * thread_count + thread_id
  sequence = sequence + 1
  local first = number * records
  local lines = {}
  local minute, stamp = -1, nil
  for i = 0, records - 1 do
    local t = base + first + i
    if math.floor(t / 60) ~= minute then -- os.date once a minute, not once a record
      minute = math.floor(t / 60)
      stamp = os.date("!%Y-%m-%d %H:%M:", minute * 60)
    end
    lines[i + 1] = string.format(
      "%d\t%s%02d\t0\t1\t\t0\t0\t0\t36.5\t%d\n", i + 1, stamp, t % 60, first + i + 1)
  end
  local path = string.format(
    "/iclock/cdata?SN=%s%0" .. width .. "d&table=ATTLOG&Stamp=9999", prefix, number % devices)
  return wrk.format("POST", path, post_headers, table.concat(lines))
end

function response(status, headers, body)
  local count = status == 200 and string.match(body, "^OK:%s*(%d+)")
  if count then
    acked = acked + tonumber(count)
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local total_acked, total_refused = 0, 0
  for _, thread in ipairs(threads) do
    total_acked = total_acked + (thread:get("acked") or 0)
    total_refused = total_refused + (thread:get("refused") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "status_errors": %d, "acked": %d, '
      .. '"refused": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write,
    errors.timeout, errors.status, total_acked, total_refused))
end
