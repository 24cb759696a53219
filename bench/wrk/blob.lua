-- GET of one blob from a registry's /v2/ API. BENCH_REPO, BENCH_DIGEST, and BENCH_TOKEN
-- (a bearer token, if any).
local path = "/v2/" .. os.getenv("BENCH_REPO") .. "/blobs/" .. os.getenv("BENCH_DIGEST")

init = function()
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

request = function()
  return wrk.format("GET", path)
end

