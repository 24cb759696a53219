-- GET of a manifest from a registry's /v2/ API, as a Docker client asks for it.
-- BENCH_REPO: the repository; BENCH_TAGS: how many tags t0..tN-1 to pick from at random,
-- or BENCH_DIGEST: one digest to ask for every time. BENCH_TOKEN: a bearer token, if any.
local repo = os.getenv("BENCH_REPO")
local tags = tonumber(os.getenv("BENCH_TAGS") or "0")
local digest = os.getenv("BENCH_DIGEST")

init = function()
  wrk.headers["Accept"] = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    .. "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

request = function()
  local reference = digest
  if not reference or reference == "" then
    reference = "t" .. math.random(0, tags - 1)
  end
  return wrk.format("GET", "/v2/" .. repo .. "/manifests/" .. reference)
end

