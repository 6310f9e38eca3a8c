-- Shared by the bench scripts (loaded with dofile): numbers the threads, counts each thread's
-- answers by status, and at the end prints one line `WRK_JSON {...}` for bench/api_load.py.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

statuses = {}  -- this thread's answers by status (a global, so that done() can read it)

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
   local merged, non_2xx = {}, 0
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
         local code = tonumber(status)
         if code < 200 or code > 299 then non_2xx = non_2xx + count end
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      table.insert(parts, string.format('"%s":%d', status, count))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
      '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"status_errors":%d,' ..
      '"non_2xx":%d,"statuses":{%s}}\n',
      summary.duration, summary.requests, summary.bytes,
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      e.connect, e.read, e.write, e.timeout, e.status, non_2xx, table.concat(parts, ",")))
end
