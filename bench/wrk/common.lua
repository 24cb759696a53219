-- Shared by the catalog load scripts: the token, the shape of the seeded store, and a
-- per-thread random seed so that threads do not replay one another's requests.
local M = {}

M.namespaces = tonumber(os.getenv("BENCH_NAMESPACES") or "100")
M.streams = tonumber(os.getenv("BENCH_STREAMS_PER_NAMESPACE") or "100")
M.tags = tonumber(os.getenv("BENCH_TAGS") or "10")

function M.setup_headers()
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BERTH_TOKEN")
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function M.namespace()
  return string.format("ns-%03d", math.random(0, M.namespaces - 1))
end

function M.stream()
  return string.format("app-%03d", math.random(0, M.streams - 1))
end

function M.tag()
  return "t" .. math.random(0, M.tags - 1)
end

return M
