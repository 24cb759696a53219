-- GET imagestreams/<stream> for random streams.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local c = require("common")
init = function() c.setup_headers() end
request = function()
  return wrk.format("GET", "/apis/image.openshift.io/v1/namespaces/" .. c.namespace() .. "/imagestreams/" .. c.stream())
end
