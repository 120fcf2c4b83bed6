-- POST /api/jobs/{job}/apply as a different applicant or to a different job on every request,
-- so that no (job, applicant) pair repeats (each would be a 409 after the first).
--   wrk ... -s apply.lua http://host:port/ TOKENS_FILE FIRST_JOB JOBS THREADS
-- TOKENS_FILE holds one "user_id access_token" per line. Request k (counted across the wrk
-- threads: thread t sends k = t, t + THREADS, ...) goes to job FIRST_JOB + k % JOBS as
-- applicant (k // JOBS) % users, both in the Authorization header (the project) and in
-- X-User-Id (the baselines, which have no sign-in). Fresh pairs for JOBS x users requests.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local users, tokens = {}, {}
local first_job, jobs, step, k

function init(args)
   for line in io.lines(args[1]) do
      local user, token = line:match("^(%d+) (%S+)$")
      if user then
         table.insert(users, user)
         table.insert(tokens, token)
      end
   end
   first_job, jobs, step = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
   k = id -- this thread's number, set by setup() in report.lua
end

function request()
   local n = k
   k = k + step
   local user = math.floor(n / jobs) % #users + 1
   local headers = {
      ["Host"] = wrk.headers["Host"],
      ["Authorization"] = "Bearer " .. tokens[user],
      ["X-User-Id"] = users[user],
      ["Content-Type"] = "application/json",
   }
   return wrk.format("POST", "/api/jobs/" .. (first_job + n % jobs) .. "/apply", headers, "{}")
end
