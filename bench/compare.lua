--- Compares two benchmark runs (the JSON lines bench_gemm and bench_sd15
-- print): for every figure present in both, the old and new value and the
-- speed-up (old time / new time, or new GFLOP/s / old GFLOP/s), so each
-- version's figures are read against the previous version's.
--
--   lucid run bench/compare.lua OLD.jsonl NEW.jsonl
--
-- Lines that are not JSON objects (the human tables) are skipped.
local lucid = require "lucid"

local old_path, new_path = ...
if not old_path or not new_path then
  io.stderr:write("usage: lucid run bench/compare.lua OLD.jsonl NEW.jsonl\n")
  os.exit(2)
end

-- what tells two records of the same figure apart
local KEY_FIELDS = {"bench", "size", "component", "op", "shape", "impl", "threads", "channels"}

local function key_of(r)
  local parts = {}
  for _, f in ipairs(KEY_FIELDS) do
    if r[f] ~= nil then parts[#parts + 1] = tostring(r[f]) end
  end
  return table.concat(parts, " ")
end

-- the figure a record is about: a time (lower is better) or a rate
local function metric(r)
  if r.seconds then return "s", r.seconds, false end
  if r.ms then return "ms", r.ms, false end
  if r.gflops then return "GFLOP/s", r.gflops, true end
  if r.txt2img_peak_rss_mb then return "MB", r.txt2img_peak_rss_mb, false end
  if r.rss_mb then return "MB", r.rss_mb, false end
  return nil
end

local function read(path)
  local f, err = io.open(path, "r")
  if not f then error("compare: " .. err, 0) end
  local recs, order = {}, {}
  for line in f:lines() do
    if line:sub(1, 1) == "{" then
      local ok, r = pcall(lucid.json.decode, line)
      if ok and type(r) == "table" and r.bench then
        local k = key_of(r)
        if not recs[k] then order[#order + 1] = k end
        recs[k] = r
      end
    end
  end
  f:close()
  return recs, order
end

local old = read(old_path)
local new, order = read(new_path)
local shown = 0
print(string.format("%-52s %10s %10s %8s", "figure (" .. old_path .. " -> " .. new_path .. ")",
                    "old", "new", "speed-up"))
for _, k in ipairs(order) do
  local o, n = old[k], new[k]
  local unit, nv, higher_better = metric(n)
  local ov
  if o then ov = select(2, metric(o)) end
  -- per-op profile lines are many and small; keep the ones worth a look
  local minor = n.bench == "sd15_profile" and (nv or 0) < 0.05
  if unit and ov and ov > 0 and nv > 0 and not minor then
    local ratio = higher_better and nv / ov or ov / nv
    print(string.format("%-52s %10.3f %10.3f %7.2fx  %s", k, ov, nv, ratio, unit))
    print(lucid.json.encode({bench = "compare", figure = k, unit = unit, old = ov, new = nv,
                             speedup = ratio}))
    shown = shown + 1
  end
end
if shown == 0 then print("no figure in common") end
