-- GET imagestreams of one random namespace (100 streams, about 0.5 MB of JSON).
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local c = require("common")
init = function() c.setup_headers() end
request = function()
  return wrk.format("GET", "/apis/image.openshift.io/v1/namespaces/" .. c.namespace() .. "/imagestreams")
end
