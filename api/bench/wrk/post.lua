-- POST a JSON body (the first script argument) to the URL's path; headers from wrk's -H.
--   wrk ... -s post.lua http://host:port/api/messages '{"recipient_id": 2, "body": "hi"}'
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   wrk.headers["Content-Type"] = "application/json"
end
