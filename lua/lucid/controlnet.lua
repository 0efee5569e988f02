--- ControlNet: loading (lucid.controlnet), control-image preparation and
-- preprocessors, and the residuals for the sampling loop with several
-- ControlNets, guess mode and start/end fractions, as diffusers'
-- StableDiffusionControlNetPipeline.
--
-- lucid.controlnet(path, opts) -> cn
--   path: a diffusers folder (config.json + diffusion_pytorch_model
--         [.fp16].safetensors) or a .safetensors file: diffusers names, or
--         the original releases' control_model.* names. A single file
--         takes opts.config (a folder or a config.json path) or, when it
--         sits beside a ControlNetModel config.json, that one; otherwise
--         the config is inferred from the shapes (8 heads, as SD 1.x).
-- cn:forward(x, t, context, image, scale, opts) -> down_residuals, mid
--   image [1 or N,3,8h,8w] in [0,1]; scale default 1;
--   opts.guess_mode (or a boolean): the logspace scales of diffusers.
-- cn.config, cn.num_skips, cn:free()
local core = require "lucid.core"

local M = {}

local function file_type(path) return (core.sys.file_type(path)) end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 0) end
  local s = f:read("*a")
  f:close()
  return s
end

local function clean(msg) return (tostring(msg):gsub("^[^\n]-%.lua:%d+: ", "")) end

local CN = {}
CN.__index = function(self, k)
  if CN[k] then return CN[k] end
  if k == "config" or k == "num_skips" then return self.c[k] end
end

--- x, t, context, image [N or 1,3,H*f,W*f] in [0,1], scale -> down, mid
function CN:forward(x, t, context, image, scale, opts)
  local guess = opts
  if type(opts) == "table" then guess = opts.guess_mode end
  local ok, down, mid = pcall(self.c.forward, self.c, x, t, context, image, scale or 1, guess and true or false)
  if not ok then error(clean(down), 2) end
  return down, mid
end

function CN:free() self.c:free() end

CN.__tostring = function(self) return tostring(self.c) end

local function weights_file(dir)
  for _, v in ipairs({"", ".fp16", ".bf16", ".fp32"}) do
    local p = dir .. "/diffusion_pytorch_model" .. v .. ".safetensors"
    if file_type(p) == "file" then return p end
  end
  error(dir .. ": no diffusion_pytorch_model.safetensors (nor its .fp16/.bf16 variants)", 0)
end

-- a config.json text that names a ControlNet, or nil
local function controlnet_config(path)
  if file_type(path) ~= "file" then return nil end
  local js = read(path)
  local ok, t = pcall(core.json.decode, js)
  if ok and type(t) == "table" and t._class_name == "ControlNetModel" then return js end
  return nil
end

--- lucid.controlnet(path, opts) -> ControlNet object (see the top)
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("lucid.controlnet: expected a path, got " .. type(path), 2) end
  path = path:gsub("/+$", "")
  local kind = file_type(path)
  local file, js
  if kind == "directory" then
    if file_type(path .. "/config.json") ~= "file" then
      local hint = file_type(path .. "/model_index.json") == "file"
        and " (a Stable Diffusion pipeline folder, not a ControlNet)" or ""
      error("not a ControlNet: " .. path .. " has no config.json" .. hint, 2)
    end
    js = read(path .. "/config.json")
    local ok, err = pcall(function() file = weights_file(path) end)
    if not ok then error(clean(err), 2) end
  elseif kind == "file" then
    file = path
    if opts.config then
      local c = opts.config
      if file_type(c) == "directory" then c = c .. "/config.json" end
      js = read(c)
    else
      local dir = path:match("^(.*)/[^/]+$") or "."
      js = controlnet_config(dir .. "/config.json")
    end
  else
    error(path .. ": no such file or directory", 2)
  end
  local ok, c = pcall(core.controlnet_load_file, file, js)
  if not ok then
    local msg = clean(c)
    if not msg:find(path, 1, true) and not msg:find(file, 1, true) then msg = path .. ": " .. msg end
    error(msg, 2)
  end
  return setmetatable({c = c, path = path}, CN)
end

--- An image [N,C,H,W] in [0,1] resized to height x width as diffusers'
-- control image processor does with PIL images (LANCZOS on 8 bits); the
-- same size is returned unchanged.
function M.prepare_image(img, width, height)
  local s = img:shape()
  if #s == 3 then img = img:view(1, s[1], s[2], s[3]); s = img:shape() end
  if s[2] == 1 then img = img:repeat_(1, 3, 1, 1) end
  if s[3] == height and s[4] == width then return img end
  return core.image_resize_lanczos(img, height, width)
end

--- The preprocessors: "none", "canny" (opts.low/high, default 100/200,
-- opts.blur a Gaussian sigma), "gray", "invert" (line art: dark lines on
-- white become white on black).
function M.preprocess(img, kind, opts)
  opts = opts or {}
  if kind == nil or kind == "none" then return img end
  if kind == "canny" then
    return core.image_canny(img, opts.low or 100, opts.high or 200, opts.blur or 0)
  elseif kind == "gray" then
    return core.image_gray(img)
  elseif kind == "invert" then
    return core.image_invert(img)
  end
  error("controlnet: unknown preprocessor '" .. tostring(kind) .. "' (none, canny, gray, invert)", 2)
end

--- diffusers' controlnet_keep: 1 while step i (1-based) of n lies within
-- [start, end] as fractions of the run, else 0.
function M.keep(i, n, start, stop)
  local i0 = i - 1
  if i0 / n < start or (i0 + 1) / n > stop then return 0 end
  return 1
end

local function list(v, n, what)
  if type(v) ~= "table" then
    local r = {}
    for k = 1, n do r[k] = v end
    return r
  end
  if #v == 1 and n > 1 then return list(v[1], n, what) end
  if #v ~= n then error(string.format("controlnet: %d %s for %d ControlNets", #v, what, n), 3) end
  return v
end

--- Residuals of several ControlNets summed (diffusers' MultiControlNetModel):
-- nets, images and scales are lists (one image/scale may serve all).
function M.residuals(nets, x, t, context, images, scales, guess_mode)
  local n = #nets
  images = list(images, n, "control images")
  scales = list(scales or 1, n, "scales")
  local down, mid
  for k = 1, n do
    local d, m = nets[k]:forward(x, t, context, images[k], scales[k], guess_mode)
    if not down then
      down, mid = d, m
    else
      for j = 1, #down do down[j] = down[j] + d[j] end
      mid = mid + m
    end
  end
  return down, mid
end

--- p.unet_opts for lucid.sampling.run:
-- p.nets        ControlNets (a list, or one)
-- p.images      control images [1,3,H,W] at the output size (list or one)
-- p.scales      conditioning scales (list or one number; default 1)
-- p.start, p.stop  fractions of the run (lists or numbers; default 0, 1)
-- p.guess_mode  the ControlNets see only the "cond" branch; the other
--               branches get no residual (zeros), as diffusers
-- p.first       first step of the run (img2img): fractions count from it
function M.unet_opts(p)
  local nets = p.nets
  if getmetatable(nets) == CN then nets = {nets} end
  local n = #nets
  local images = list(p.images, n, "control images")
  local scales = list(p.scales or 1, n, "scales")
  local starts = list(p.start or 0, n, "start fractions")
  local stops = list(p.stop or 1, n, "end fractions")
  local lucid = require "lucid"
  return function(i, t, names, x_in, context, nsteps)
    local s = p.scheduler
    local total = nsteps or (s and #s.timesteps) or p.steps
    local first = p.first or 1
    local active, sc, ims = {}, {}, {}
    for k = 1, n do
      local keep = M.keep(i - first + 1, total - first + 1, starts[k], stops[k])
      if keep > 0 then
        active[#active + 1] = nets[k]
        sc[#sc + 1] = scales[k] * keep
        ims[#ims + 1] = images[k]
      end
    end
    if #active == 0 then return nil end
    if not p.guess_mode then
      local down, mid = M.residuals(active, x_in, t, context, ims, sc, false)
      return {down_residuals = down, mid_residual = mid}
    end
    -- guess mode: only the conditional branch
    local b = x_in:shape()[1] / #names
    local jc
    for j, name in ipairs(names) do if name == "cond" then jc = j end end
    if not jc then jc = #names end
    local xc = x_in:narrow(1, (jc - 1) * b + 1, b)
    local cc = context:narrow(1, (jc - 1) * b + 1, b)
    local down, mid = M.residuals(active, xc, t, cc, ims, sc, true)
    if #names == 1 then return {down_residuals = down, mid_residual = mid} end
    local function spread(r)
      local parts = {}
      for j = 1, #names do parts[j] = j == jc and r or lucid.zeros(r:shape()) end
      return lucid.cat(parts, 1)
    end
    for j = 1, #down do down[j] = spread(down[j]) end
    return {down_residuals = down, mid_residual = spread(mid)}
  end
end

M.ControlNet = CN
return M
