--- What made an output: A1111's `parameters` text (read by every SD tool)
-- and a `lucid` JSON record (recipe, its hash, options, seed, model hash,
-- version) that `lucid replay` re-runs.
local M = {}

local sampler_names = {
  ddim = "DDIM", ddpm = "DDPM", pndm = "PLMS", euler = "Euler", euler_a = "Euler a",
  heun = "Heun", lms = "LMS", dpmpp_2m = "DPM++ 2M",
}

local hash_cache = {}

--- SHA-256 of a model: the file itself, or for a diffusers folder the UNet
-- weights (what A1111's hash identifies). Cached per path, size and mtime
-- in ~/.cache/lucid/hashes.json so big checkpoints are hashed once.
function M.model_hash(path)
  local lucid = require "lucid"
  local sys = lucid.sys
  local file = path
  if sys and sys.file_type(path) == "directory" then
    for _, cand in ipairs{"unet/diffusion_pytorch_model.safetensors",
                          "unet/diffusion_pytorch_model.fp16.safetensors",
                          "model_index.json"} do
      if sys.file_type(path .. "/" .. cand) == "file" then file = path .. "/" .. cand; break end
    end
  end
  local st = sys and sys.stat and sys.stat(file)
  local key = file .. (st and (":" .. st.size .. ":" .. st.mtime) or "")
  if hash_cache[key] then return hash_cache[key] end
  local cache_path
  local home = os.getenv("XDG_CACHE_HOME") or (os.getenv("HOME") and os.getenv("HOME") .. "/.cache")
  local disk = {}
  if home and st then
    cache_path = home .. "/lucid/hashes.json"
    local f = io.open(cache_path)
    if f then
      local ok, t = pcall(lucid.json.decode, f:read("*a"))
      f:close()
      if ok and type(t) == "table" then disk = t end
    end
    if type(disk[key]) == "string" then hash_cache[key] = disk[key]; return disk[key] end
  end
  local h = lucid.sha256_file(file)
  hash_cache[key] = h
  if cache_path then
    disk[key] = h
    os.execute("mkdir -p '" .. home:gsub("'", "'\\''") .. "/lucid' 2>/dev/null")
    local tmp = cache_path .. ".tmp"
    local f = io.open(tmp, "w")
    if f then
      f:write(lucid.json.encode(disk))
      f:close()
      os.rename(tmp, cache_path)
    end
  end
  return h
end

local function clean(s)
  return (tostring(s or ""):gsub("\r", ""))
end

--- A1111's infotext:
--   prompt
--   Negative prompt: ...
--   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: ...
function M.parameters(r)
  local lines = {clean(r.prompt)}
  if r.negative and r.negative ~= "" then lines[#lines + 1] = "Negative prompt: " .. clean(r.negative) end
  local kv = {}
  local function add(k, v) if v ~= nil and v ~= "" then kv[#kv + 1] = k .. ": " .. tostring(v) end end
  add("Steps", r.steps)
  add("Sampler", sampler_names[r.sampler] or r.sampler)
  if r.schedule and r.schedule ~= "default" then add("Schedule type", r.schedule:gsub("^%l", string.upper)) end
  add("CFG scale", r.cfg)
  add("Seed", r.seed)
  if r.width and r.height then add("Size", r.width .. "x" .. r.height) end
  if r.model_sha256 then add("Model hash", r.model_sha256:sub(1, 10)) end
  add("Model", r.model_name)
  add("Denoising strength", r.strength)
  if r.negative_start then add("Negative start", r.negative_start) end
  add("Version", "lucid " .. (r.version or ""))
  lines[#lines + 1] = table.concat(kv, ", ")
  return table.concat(lines, "\n")
end

--- The `lucid` record: everything replay needs. `ctx` is what the CLI
-- passes a recipe (name, path, provenance()); its record holds the recipe
-- name, the options as argv and as a table, and the version. Added here:
-- the recipe file's hash and the caller's extras (seed, model hash).
function M.record(ctx, opts, extra)
  local lucid = require "lucid"
  local r
  if ctx and ctx.provenance then
    r = ctx.provenance()
  else
    local options = {}
    for k, v in pairs(opts) do
      if k ~= "help" and type(v) ~= "function" then options[k] = v end
    end
    r = {recipe = ctx and ctx.name, options = options, version = lucid.version}
  end
  if ctx and ctx.path then
    local f = io.open(ctx.path, "rb")
    if f then r.recipe_sha256 = lucid.sha256(f:read("*a")); f:close() end
  end
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

--- Text chunks for lucid.image.save: {parameters = ..., lucid = json}
function M.png_text(recipe, opts, info)
  local lucid = require "lucid"
  local rec = M.record(recipe, opts, info)
  local p = {}
  for k, v in pairs(opts) do p[k] = v end
  for k, v in pairs(info or {}) do p[k] = v end
  p.version = lucid.version
  return {parameters = M.parameters(p), lucid = lucid.json.encode(rec)}
end

return M
