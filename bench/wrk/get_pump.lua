-- GET /v1/pumps/{serial}, rotating over the serials listed in args[1] (one a line); each
-- thread starts at its own place. The Authorization header comes from wrk's -H.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local serials = {}
local cursor = 0

function init(args)
   for line in io.lines(args[1]) do
      if line ~= "" then table.insert(serials, line) end
   end
   cursor = (id * 7919) % #serials
end

function request()
   cursor = cursor % #serials + 1
   return wrk.format("GET", "/v1/pumps/" .. serials[cursor])
end
