-- GET the URL given to wrk (headers come from wrk's -H), counting answers by status.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
