-- POST /v1/refills. args: [1] a file of pumps, one a line:
--   serial <TAB> previous fill (epoch s) <TAB> previous fill mL <TAB> labeled flow mL/day <TAB> fill type
-- [2] the number of wrk threads, [3] the step between two fills of a pump (s), [4] the latest
-- allowed performed_at (epoch s). Thread i owns the pumps whose line index is i modulo the thread
-- count and refills them in turn, each one `step` after its previous fill, with the residual the
-- labeled flow leaves (so the flow is normal). Run with one connection per thread (-t = -c):
-- a thread's requests are then sequential and a pump never has two refills in flight.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local pumps = {}
local cursor = 0
local step_s, not_after

function init(args)
   local nthreads = tonumber(args[2])
   step_s, not_after = tonumber(args[3]), tonumber(args[4])
   local index = 0
   for line in io.lines(args[1]) do
      if line ~= "" then
         if index % nthreads == id then
            local serial, at, fill, flow, fill_type =
               line:match("^(%S+)\t(%d+)\t(%S+)\t(%S+)\t(%S+)$")
            table.insert(pumps, {serial = serial, at = tonumber(at), fill = tonumber(fill),
                                 flow = tonumber(flow), fill_type = fill_type})
         end
         index = index + 1
      end
   end
   if #pumps == 0 then error("thread " .. id .. " owns no pump") end
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   cursor = cursor % #pumps + 1
   local p = pumps[cursor]
   local at = math.min(p.at + step_s, not_after)
   local residual = math.max(0, p.fill - p.flow * (at - p.at) / 86400)
   p.at = at
   local body = string.format(
      '{"pump_serial":"%s","performed_at":"%s","residual_volume_ml":%.6f,' ..
      '"fill_volume_ml":%.3f,"fill_type":"%s"}',
      p.serial, os.date("!%Y-%m-%dT%H:%M:%SZ", at), residual, p.fill, p.fill_type)
   return wrk.format("POST", "/v1/refills", nil, body)
end
