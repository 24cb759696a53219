-- GET imagestreamtags/<stream>:<tag> for random streams and tags.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local c = require("common")
init = function() c.setup_headers() end
request = function()
  return wrk.format("GET", "/apis/image.openshift.io/v1/namespaces/" .. c.namespace() .. "/imagestreamtags/" .. c.stream() .. ":" .. c.tag())
end
