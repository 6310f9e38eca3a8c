-- The nurses' worklist: GET /v1/appointments?status=scheduled&center=<c>&due_before=<args[1]>,
-- rotating over the centers of args[2] (comma-separated). Authorization comes from wrk's -H.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local paths = {}
local cursor = 0

function init(args)
   for center in string.gmatch(args[2], "[^,]+") do
      table.insert(paths, "/v1/appointments?status=scheduled&center=" .. center ..
                          "&due_before=" .. args[1])
   end
   cursor = id % #paths
end

function request()
   cursor = cursor % #paths + 1
   return wrk.format("GET", paths[cursor])
end
