--- Loading Stable Diffusion pipelines (lucid.load) and the component
-- objects of API.md: pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae,
-- pipe:encode_prompt, pipe.config, pipe.scheduler_config, pipe.taesd.
--
-- lucid.load(path, opts)
--   path: a diffusers folder (model_index.json, text_encoder/ tokenizer/
--         unet/ vae/ scheduler/) or a single-file .safetensors with
--         CompVis/ldm names (SD 1.x / 2.x).
--   opts.config: a diffusers folder whose component configs (and tokenizer)
--         a single file should use instead of inferring them from shapes
--         (the head counts of unusual models cannot be inferred). Default:
--         the file's own folder when it is a diffusers folder; false turns
--         that off.
--   opts.prediction_type: overrides the scheduler config's.
--   opts.unet = false: skip the UNet (text encoder / VAE work only).
--   opts.controlnet: a ControlNet path, or a list of them (lucid.controlnet):
--         pipe.controlnet (the first) and pipe.controlnets.
local core = require "lucid.core"

local M = {}

local json = core.json

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function file_type(path)
  return (core.sys.file_type(path))
end

local function read_json(path)
  local s, err = read_file(path)
  if not s then error(err, 0) end
  local ok, t = pcall(json.decode, s)
  if not ok then error(path .. ": " .. tostring(t), 0) end
  return t, s
end

local function opt_json(path)
  if file_type(path) == "file" then return read_json(path) end
  return nil, nil
end

--- The weights file of a diffusers component folder: full precision first,
-- then the fp16/bf16 variants (all are converted to f32 at load).
local function weights_file(dir, stem)
  for _, v in ipairs({"", ".fp16", ".bf16", ".fp32"}) do
    local p = dir .. "/" .. stem .. v .. ".safetensors"
    if file_type(p) == "file" then return p end
  end
  local bin = dir .. "/" .. stem .. ".bin"
  if file_type(bin) == "file" then
    error(dir .. ": only " .. stem .. ".bin (a pickle) found; lucid reads .safetensors", 0)
  end
  error(dir .. ": no " .. stem .. ".safetensors (nor its .fp16/.bf16 variants)", 0)
end

local function clean(msg) return (tostring(msg):gsub("^[^\n]-%.lua:%d+: ", "")) end

-- wraps a method so that its errors point at the caller, not at this file
local function guarded(f)
  return function(...)
    local r = {pcall(f, ...)}
    if not r[1] then error(clean(r[2]), 2) end
    return unpack(r, 2, table.maxn(r))
  end
end

-- ---------------------------------------------------------------------
-- VAE: latents in and out of the scaled space, images in [0,1]

local VAE = {}
VAE.__index = VAE

--- wraps a core.vae_load object (pipe.vae is one)
function VAE.new(c)
  local cfg = c:config()
  return setmetatable({c = c, scaling_factor = cfg.scaling_factor,
                       shift_factor = cfg.shift_factor or 0, config = cfg}, VAE)
end
local new_vae = VAE.new

-- a wrong argument is named here, not as arithmetic on a nil deep inside
local function need_tensor(v, what)
  if not core.is_tensor(v) then
    local kind = type(v) == "userdata" and "a freed tensor or other userdata" or type(v)
    error(what .. " must be a tensor, got " .. kind, 0)
  end
end

--- image [N,3,H,W] in [0,1] -> mean, logvar (unscaled latents)
VAE.encode_moments = guarded(function(self, image)
  need_tensor(image, "vae encode: image")
  return self.c:encode_moments(image * 2 - 1)
end)

--- image [N,3,H,W] in [0,1] -> latent mean times the scaling factor.
-- opts.generator (a lucid.generator): a sample of the latent distribution
-- instead, mean + exp(logvar / 2) * generator:randn(shape), as diffusers'
-- latent_dist.sample(generator) (img2img pipelines use it).
VAE.encode = guarded(function(self, image, opts)
  need_tensor(image, "vae encode: image")
  local mean, logvar = self.c:encode_moments(image * 2 - 1)
  local z = mean
  if opts and opts.generator then
    local noise = opts.generator:randn(mean:shape())
    z = mean + (logvar * 0.5):exp() * noise
  end
  if self.shift_factor ~= 0 then z = z - self.shift_factor end
  return z * self.scaling_factor
end)

--- unscaled latent -> raw decoder output (about [-1,1]), as diffusers'
-- vae.decode. opts.tile / opts.overlap (latent pixels) decode in blended
-- tiles; latents larger than 128x128 are tiled by default (tile 64).
local function decode_raw(self, z, opts)
  need_tensor(z, "vae decode: latent")
  local s = z:shape()
  if not opts and #s == 4 and (s[3] > 128 or s[4] > 128) then opts = {tiled = true} end
  return self.c:decode_raw(z, opts)
end
VAE.decode_raw = guarded(decode_raw)

--- scaled latent -> image [N,3,H,W] in [0,1]
VAE.decode = guarded(function(self, latent, opts)
  need_tensor(latent, "vae decode: latent")
  local z = latent / self.scaling_factor
  if self.shift_factor ~= 0 then z = z + self.shift_factor end
  local x = decode_raw(self, z, opts)
  return ((x + 1) / 2):clamp(0, 1)
end)

function VAE:free() self.c:free() end

-- ---------------------------------------------------------------------
-- TAESD

local TAESD = {}
TAESD.__index = TAESD

--- lucid.taesd(dir) -> object with :decode(scaled latent) -> image in [0,1]
-- and :encode(image in [0,1]) -> scaled latent. dir defaults to the bundled
-- weights (<home>/data/taesd); it holds taesd_encoder.safetensors and
-- taesd_decoder.safetensors (either may be absent).
function M.taesd(dir)
  dir = dir or (core.paths.home .. "/data/taesd")
  local enc, dec = dir .. "/taesd_encoder.safetensors", dir .. "/taesd_decoder.safetensors"
  if file_type(enc) ~= "file" then enc = nil end
  if file_type(dec) ~= "file" then dec = nil end
  if not enc and not dec then
    error(dir .. ": no taesd_encoder.safetensors or taesd_decoder.safetensors", 0)
  end
  return setmetatable({c = core.taesd_load(enc, dec)}, TAESD)
end

TAESD.encode = guarded(function(self, image) return self.c:encode(image) end)
TAESD.decode = guarded(function(self, latent) return self.c:decode(latent) end)
function TAESD:free() self.c:free() end

-- ---------------------------------------------------------------------
-- the pipeline object

local Pipe = {}
Pipe.__index = function(self, k)
  if k == "taesd" then -- loaded on first use
    local t = M.taesd()
    rawset(self, "taesd", t)
    return t
  end
  return Pipe[k]
end

--- text -> [1,77,C] conditioning (opts.clip_skip as text_encoder:forward)
Pipe.encode_prompt = guarded(function(self, text, opts)
  if not self.tokenizer then error("encode_prompt: this pipeline has no tokenizer", 0) end
  local ids = self.tokenizer:encode(text)
  return self.text_encoder:forward(ids, opts)
end)

--- releases every component now (instead of at garbage collection)
function Pipe:free()
  for _, k in ipairs({"text_encoder", "vae", "unet"}) do
    local c = rawget(self, k)
    if c and c.free then c:free() end
  end
  local t = rawget(self, "taesd")
  if t then t:free() end
end

-- scheduler defaults for single files (the model folders' own files for SD
-- 1.x and 2.x; SD 2.x single files are assumed to be the 768-v models,
-- as diffusers assumes when it cannot tell)
local SCHED_SD1 = {
  _class_name = "PNDMScheduler", beta_start = 0.00085, beta_end = 0.012,
  beta_schedule = "scaled_linear", num_train_timesteps = 1000, set_alpha_to_one = false,
  skip_prk_steps = true, steps_offset = 1, clip_sample = false, prediction_type = "epsilon",
}
local SCHED_SD2 = {
  _class_name = "DDIMScheduler", beta_start = 0.00085, beta_end = 0.012,
  beta_schedule = "scaled_linear", num_train_timesteps = 1000, set_alpha_to_one = false,
  skip_prk_steps = true, steps_offset = 1, clip_sample = false,
  prediction_type = "v_prediction",
}

local function copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

local function tokenizer_for(dir, max_len)
  if not core.tokenizer then return nil end
  return core.tokenizer(dir, {max_length = max_len})
end

-- SD 2.x's OpenCLIP tokenizer pads with "!" (id 0) after the EOS where
-- the OpenAI CLIP one repeats EOS; same vocabulary otherwise.
local ZeroPad = {}
function ZeroPad.__index(self, k)
  if ZeroPad[k] then return ZeroPad[k] end
  local v = self.inner[k]
  if type(v) == "function" then
    return function(s, ...) return v(s == self and self.inner or s, ...) end
  end
  return v
end
function ZeroPad:encode(text, max_len)
  local ids = self.inner:encode(text, max_len)
  local rows, eos = ids:totable(), self.eos
  for _, row in ipairs(rows) do
    local seen = false
    for i = 1, #row do
      if seen then row[i] = 0 elseif row[i] == eos then seen = true end
    end
  end
  return core.tensor(rows, "i64")
end

local function load_folder(dir, opts)
  local pipe = {path = dir, config = {}}
  pipe.config.model_index = read_json(dir .. "/model_index.json")
  local te_cfg, te_js = read_json(dir .. "/text_encoder/config.json")
  local w = core.weights_load(weights_file(dir .. "/text_encoder", "model"),
                              {layout = "diffusers_clip"})
  pipe.text_encoder = core.clip_text_load(w, te_js)
  pipe.config.text_encoder = te_cfg
  local vae_cfg, vae_js = read_json(dir .. "/vae/config.json")
  w = core.weights_load(weights_file(dir .. "/vae", "diffusion_pytorch_model"),
                        {layout = "diffusers_vae"})
  pipe.vae = new_vae(core.vae_load(w, vae_js))
  pipe.config.vae = vae_cfg
  w = nil
  if opts.unet ~= false then
    local unet_cfg, unet_js = read_json(dir .. "/unet/config.json")
    pipe.config.unet = unet_cfg
    if core.unet_load_file then
      pipe.unet = core.unet_load_file(weights_file(dir .. "/unet", "diffusion_pytorch_model"),
                                      unet_js)
    end
  end
  local sched = opt_json(dir .. "/scheduler/scheduler_config.json")
  pipe.scheduler_config = sched or copy(SCHED_SD1)
  pipe.config.scheduler = pipe.scheduler_config
  -- a folder without tokenizer files gets the bundled CLIP vocabulary
  local tdir = dir .. "/tokenizer"
  if file_type(tdir .. "/vocab.json") ~= "file" then tdir = core.paths.home .. "/data/clip" end
  pipe.tokenizer = tokenizer_for(tdir, pipe.text_encoder:config().max_position_embeddings)
  return pipe
end

-- a single file's messages also give the tensor's name in the file
local function ldm_hint(kind, path, f, ...)
  local r = {pcall(f, ...)}
  if r[1] then return unpack(r, 2, table.maxn(r)) end
  local msg = clean(r[2])
  local name = msg:match("missing tensor ([%w_%.]+)") or msg:match("^[^:]+: ([%w_%.]+): shape")
               or msg:match("unexpected tensors? ([%w_%.]+)")
  local ldm = name and core.ldm_name(kind, name, path)
  if ldm and ldm ~= name and not ldm:find(name, 1, true) then
    msg = msg .. " (" .. ldm .. " in the checkpoint)"
  elseif ldm and ldm ~= name then
    msg = msg .. " (prefixed " .. ldm:sub(1, #ldm - #name) .. " in the checkpoint)"
  end
  error(msg, 0)
end

local function load_single(path, opts)
  core.checkpoint_check(path) -- "not a Stable Diffusion checkpoint: ..." otherwise
  local cdir = opts.config
  local function cfg(rel)
    if not cdir then return nil, nil end
    return read_json(cdir .. "/" .. rel)
  end
  local pipe = {path = path, config = {}}
  local w, openclip = core.weights_load(path, {layout = "ldm_clip"})
  local te_cfg, te_js = cfg("text_encoder/config.json")
  pipe.text_encoder = ldm_hint(openclip and "openclip" or "clip", path, core.clip_text_load, w,
                              te_js, openclip and "gelu" or "quick_gelu")
  pipe.config.text_encoder = te_cfg or pipe.text_encoder:config()
  local vae_cfg, vae_js = cfg("vae/config.json")
  w = core.weights_load(path, {layout = "ldm_vae"})
  pipe.vae = new_vae(ldm_hint("vae", path, core.vae_load, w, vae_js))
  pipe.config.vae = vae_cfg or pipe.vae.config
  w = nil
  if opts.unet ~= false then
    local unet_cfg, unet_js = cfg("unet/config.json")
    if core.unet_load_file then
      pipe.unet = core.unet_load_file(path, unet_js)
      pipe.config.unet = unet_cfg or pipe.unet.config
    else
      pipe.config.unet = unet_cfg
    end
  end
  local sched = cdir and opt_json(cdir .. "/scheduler/scheduler_config.json")
  pipe.scheduler_config = sched or copy(openclip and SCHED_SD2 or SCHED_SD1)
  pipe.config.scheduler = pipe.scheduler_config
  local max_len = pipe.text_encoder:config().max_position_embeddings
  if cdir and file_type(cdir .. "/tokenizer/vocab.json") == "file" then
    pipe.tokenizer = tokenizer_for(cdir .. "/tokenizer", max_len)
  else
    -- the bundled OpenAI CLIP vocabulary (SD 1.x; SD 2.x's OpenCLIP uses
    -- the same BPE vocabulary, but pads with "!" (id 0) rather than EOS)
    pipe.tokenizer = tokenizer_for(core.paths.home .. "/data/clip", max_len)
    if openclip and pipe.tokenizer then
      pipe.tokenizer = setmetatable({inner = pipe.tokenizer,
                                     eos = pipe.tokenizer:id("<|endoftext|>")}, ZeroPad)
    end
  end
  pipe.openclip = openclip
  return pipe
end

--- lucid.load(path, opts) -> pipeline (see the top of this file)
function M.load(path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("lucid.load: expected a path, got " .. type(path), 2) end
  path = path:gsub("/+$", "")
  local kind = file_type(path)
  local loader
  if kind == "directory" then
    if file_type(path .. "/model_index.json") ~= "file" then
      error(path .. ": not a diffusers model folder (no model_index.json)", 2)
    end
    loader = load_folder
  elseif kind == "file" then
    if not path:match("%.safetensors$") then
      error(path .. ": expected a diffusers folder or a .safetensors file", 2)
    end
    loader = load_single
    if opts.config == nil then
      -- a single file kept inside a diffusers folder (as converted
      -- checkpoints often are) takes that folder's configs: head counts
      -- and tokenizer settings cannot be read from the weights
      local dir = path:match("^(.*)/[^/]+$") or "."
      if file_type(dir .. "/model_index.json") == "file" and file_type(dir .. "/unet/config.json") == "file" then
        local copy_opts = {}
        for k, v in pairs(opts) do copy_opts[k] = v end
        copy_opts.config = dir
        opts = copy_opts
      end
    end
  else
    error(path .. ": no such file or directory", 2)
  end
  local ok, pipe = pcall(loader, path, opts)
  if not ok then
    -- the component's message, without Lua positions, naming the model
    local msg = tostring(pipe):gsub("^[^\n]-%.lua:%d+: ", "")
    local base = path:match("[^/]+$")
    if not msg:find(base, 1, true) then msg = path .. ": " .. msg end
    error(msg, 2)
  end
  if opts.prediction_type then pipe.scheduler_config.prediction_type = opts.prediction_type end
  -- opts.controlnet: a ControlNet path (pipe.controlnet) or a list of
  -- them (pipe.controlnets, the first also as pipe.controlnet)
  if opts.controlnet then
    local cn = require "lucid.controlnet"
    local paths = type(opts.controlnet) == "table" and opts.controlnet or {opts.controlnet}
    pipe.controlnets = {}
    for k, p in ipairs(paths) do
      local ok, c = pcall(cn.load, p)
      if not ok then error(clean(c), 2) end
      pipe.controlnets[k] = c
    end
    pipe.controlnet = pipe.controlnets[1]
  end
  pipe.vae_scale_factor = pipe.vae.config.scale_factor
  return setmetatable(pipe, Pipe)
end

M.Pipe = Pipe
M.VAE = VAE
return M
