-- POST imagestreammappings: point a random tag at a new image (a durable write of the
-- Image and the stream's new history, with its event-log entries, per request).
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local c = require("common")
local hex = "0123456789abcdef"
local function digest()
  local out = {}
  for i = 1, 64 do
    local r = math.random(1, 16)
    out[i] = hex:sub(r, r)
  end
  return "sha256:" .. table.concat(out)
end
-- wrk.format replaces wrk.headers when given headers, so the token is passed again.
init = function() c.setup_headers() end
request = function()
  local d = digest()
  local ns = c.namespace()
  local body = '{"kind":"ImageStreamMapping","apiVersion":"image.openshift.io/v1","metadata":{"name":"' .. c.stream() ..
    '"},"tag":"' .. c.tag() .. '","image":{"metadata":{"name":"' .. d .. '"},"dockerImageReference":"registry.example.com/' .. ns .. '/app@' .. d .. '"}}'
  return wrk.format("POST", "/apis/image.openshift.io/v1/namespaces/" .. ns .. "/imagestreammappings", {["Content-Type"] = "application/json", ["Authorization"] = wrk.headers["Authorization"]}, body)
end
