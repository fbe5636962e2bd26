-- wrk script of bench/ingest/run.py: POST pre-generated batches, each body once.
--
-- The batches are files <dir>/<thread>-<n>.json written by run.py (one directory per phase);
-- each wrk thread sends its own files in turn. The counts of each 202 are summed from the
-- answers, so the run reports what was stored, not only how many requests were made.
-- Environment: BENCH_DIR (the directory), BENCH_KEY (the API key), BENCH_FILES (per thread).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local dir = os.getenv("BENCH_DIR")
   local files = tonumber(os.getenv("BENCH_FILES"))
   bodies = {}
   for n = 0, files - 1 do
      local f = assert(io.open(string.format("%s/%d-%d.json", dir, id, n), "rb"))
      bodies[#bodies + 1] = f:read("*a")
      f:close()
   end
   headers = {
      ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
      ["Content-Type"] = "application/json",
   }
   sent, accepted, duplicates, rejected, failed, wrapped = 0, 0, 0, 0, 0, 0
end

function request()
   sent = sent + 1
   local index = ((sent - 1) % #bodies) + 1
   if sent > #bodies then
      wrapped = wrapped + 1
   end
   return wrk.format("POST", "/ingest/v1/positions", headers, bodies[index])
end

function response(status, headers, body)
   if status ~= 202 then
      failed = failed + 1
      return
   end
   accepted = accepted + tonumber(string.match(body, '"accepted":(%d+)'))
   duplicates = duplicates + tonumber(string.match(body, '"duplicates":(%d+)'))
   rejected = rejected + tonumber(string.match(body, '"rejected":(%d+)'))
end

function done(summary, latency, requests)
   local totals = {accepted = 0, duplicates = 0, rejected = 0, failed = 0, wrapped = 0}
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + thread:get(name)
      end
   end
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "errors": %d, "accepted": %d, ' ..
      '"duplicates": %d, "rejected": %d, "failed": %d, "wrapped": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
      summary.requests, summary.duration,
      summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
      totals.accepted, totals.duplicates, totals.rejected, totals.failed, totals.wrapped,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
