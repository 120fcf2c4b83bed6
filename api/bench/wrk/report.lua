-- Shared by the bench.http scripts (loaded with dofile): counts every answer by status in
-- each wrk thread, and at the end prints one line, "BENCH {json}", that bench/http.py reads:
-- requests, duration, socket errors, answers by status, latency percentiles (microseconds).

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

statuses = {}

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         counts[status] = (counts[status] or 0) + count
      end
   end
   local shown = {}
   for status, count in pairs(counts) do
      table.insert(shown, string.format('"%d": %d', status, count))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d,'
         .. ' "timeout": %d, "non_2xx_3xx": %d, "statuses": {%s}, "p50_us": %d, "p90_us": %d,'
         .. ' "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.timeout,
      errors.status, table.concat(shown, ", "), latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
