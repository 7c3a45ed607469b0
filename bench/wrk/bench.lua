-- wrk script for bench/run.sh. Settings come from the environment:
--   BENCH_METHOD       GET (default) or POST
--   BENCH_BODY         request body (sent as application/json)
--   BENCH_COOKIE       value of the `latchkey` cookie sent on every request
--   BENCH_COOKIE_FILE  file of cookie values, one per line: each request picks one at random
--   BENCH_EXPECT       the status that counts as success (default 200)
--   BENCH_AUTHORIZATION  Authorization header sent on every request (nginx auth_basic)
--   BENCH_FORWARDED_FOR  X-Forwarded-For value sent on every request (the client
--                      address, for a server that trusts loopback as its proxy)
--   BENCH_INVENTED_NAMES  1: every request is a sign-in for a new invented user
--                      name with a wrong password (a flood that tries to fill the store)
-- Every response whose status is not BENCH_EXPECT is counted; done() prints one
-- line `BENCH_RESULT {json}` that run.sh reads.

local expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
local body = os.getenv("BENCH_BODY")
local cookie = os.getenv("BENCH_COOKIE")
local cookie_file = os.getenv("BENCH_COOKIE_FILE")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/json"
if body and body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
end
if cookie and cookie ~= "" then
   wrk.headers["Cookie"] = "latchkey=" .. cookie
end
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
   wrk.headers["Authorization"] = authorization
end
local forwarded_for = os.getenv("BENCH_FORWARDED_FOR")
if forwarded_for and forwarded_for ~= "" then
   wrk.headers["X-Forwarded-For"] = forwarded_for
end
local invented = os.getenv("BENCH_INVENTED_NAMES") == "1"

-- Per thread (each wrk thread runs this file in its own Lua state).
unexpected = 0
local requests = {}

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

if cookie_file and cookie_file ~= "" then
   function init(args)
      math.randomseed(os.time() * 1000 + (id or 0))
      for line in io.lines(cookie_file) do
         if line ~= "" then
            local headers = {}
            for k, v in pairs(wrk.headers) do headers[k] = v end
            headers["Cookie"] = "latchkey=" .. line
            table.insert(requests, wrk.format(nil, nil, headers))
         end
      end
      if #requests == 0 then
         error("no cookies in " .. cookie_file)
      end
   end

   function request()
      return requests[math.random(#requests)]
   end
end

if invented then
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   local n = 0
   function request()
      n = n + 1
      local name = string.format("invented-%d-%d-%d", id or 0, n, math.random(1e9))
      return wrk.format(nil, nil, nil,
         '{"username":"' .. name .. '","password":"wrong-password-1"}')
   end
end

function response(status, headers, body)
   if status ~= expect then
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
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
      '"unexpected_status":%d,"non_2xx_3xx":%d,' ..
      '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      bad, e.status, e.connect, e.read, e.write, e.timeout))
end
