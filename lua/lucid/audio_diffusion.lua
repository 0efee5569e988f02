--- Audio diffusion as teticio's audio-diffusion / diffusers'
-- AudioDiffusionPipeline: audio <-> mel spectrogram images (the Mel class)
-- and an unconditional UNet2DModel denoising those images with DDPM or
-- DDIM. Latent audio models (a vae/ folder) denoise VAE latents instead.
--
--   local ad = require "lucid.audio_diffusion"
--   local mel = ad.mel{x_res = 256, y_res = 256, ...}   -- or ad.mel_config(dir)
--   mel:load_audio("in.wav"); local img = mel:audio_slice_to_image(0)
--   local audio = mel:image_to_audio(img, {generator = g})
--   local pipe = ad.load("models/audio-diffusion-256")
--   local r = pipe:generate{steps = 50, generator = g}   -- r.images, r.audios
local core = require "lucid.core"
local json = core.json

local M = {}

local DEFAULTS = {x_res = 256, y_res = 256, sample_rate = 22050, n_fft = 2048,
                  hop_length = 512, top_db = 80, n_iter = 32}
M.DEFAULTS = DEFAULTS

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function read_json(path, what)
  local s = read_file(path)
  if not s then return nil end
  local ok, t = pcall(json.decode, s)
  if not ok or type(t) ~= "table" then
    error(string.format("%s: %s is not valid JSON (%s)", what, path, tostring(t)), 0)
  end
  return t, s
end

-- an error message without the Lua position the C binding adds
local function clean(msg) return (tostring(msg):gsub("^[^\n]-%.lua:%d+: ", "")) end

-- ---------------------------------------------------------------------
-- Mel

local Mel = {}
Mel.__index = Mel
M.Mel = Mel

--- A Mel converter; cfg fields default to teticio's (256x256, 22050 Hz,
-- n_fft 2048, hop 512, top_db 80, 32 Griffin-Lim iterations).
function M.mel(cfg)
  local c = {}
  for k, v in pairs(DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg or {}) do
    if DEFAULTS[k] ~= nil then
      if type(v) ~= "number" then error("mel: " .. k .. " should be a number", 2) end
      c[k] = v
    end
  end
  -- the C side validates (errors name the field)
  local ok, err = pcall(core.mel_image_to_power, core.zeros({c.y_res, 1}, "u8"), c)
  if not ok then error(clean(err), 2) end
  return setmetatable({config = c, slice_size = c.x_res * c.hop_length - 1}, Mel)
end

--- The Mel of a model folder: DIR/mel_config.json when present,
-- otherwise defaults sized by the UNet's sample_size (as audio-diffusion
-- models without that file use).
function M.mel_config(dir, unet_cfg)
  local cfg = read_json(dir .. "/mel_config.json", "mel config")
  if not cfg then
    cfg = {}
    local ss = unet_cfg and unet_cfg.sample_size
    if type(ss) == "number" then cfg.x_res, cfg.y_res = ss, ss
    elseif type(ss) == "table" then cfg.y_res, cfg.x_res = ss[1], ss[2] end
  end
  return M.mel(cfg)
end

function Mel:get_sample_rate() return self.config.sample_rate end

--- Loads a file (mono, resampled to the Mel's rate) or takes raw samples
-- (a 1-D tensor or [1, n]); pads with zeros to at least x_res*hop samples.
function Mel:load_audio(path, raw)
  local a
  if path then
    local ok, info = pcall(core.audio.info, path)
    if not ok then error(clean(info), 2) end
    -- below 1 kHz no real recording; resampling it would invent minutes
    -- of audio from a few bytes
    if info.sample_rate < 1000 or info.sample_rate > 768000 then
      error(string.format("%s: sample rate %d Hz is outside 1000..768000 Hz (a damaged or mislabelled file?)",
        path, info.sample_rate), 2)
    end
    if info.frames == 0 then error(path .. ": no audio frames (empty file)", 2) end
    local ok2, t = pcall(core.audio.load, path, self.config.sample_rate, true)
    if not ok2 then error(clean(t), 2) end
    a = t
  elseif raw then
    a = raw
  else
    error("mel:load_audio: give a file or raw samples", 2)
  end
  local shape = a:shape()
  if #shape == 2 then
    if shape[1] ~= 1 then error("mel:load_audio: raw audio should be mono", 2) end
    a = a:view({shape[2]})
  elseif #shape ~= 1 then
    error("mel:load_audio: audio should be 1-D samples", 2)
  end
  local n = a:shape()[1]
  if n == 0 then error("mel:load_audio: " .. (path or "raw audio") .. " has no samples", 2) end
  local need = self.config.x_res * self.config.hop_length
  a = a:to("f32")
  if n < need then a = core.cat({a, core.zeros({need - n})}, 1) end
  self.audio = a
  return a
end

function Mel:get_number_of_slices()
  if not self.audio then error("mel: load_audio first", 2) end
  return math.floor(self.audio:shape()[1] / self.slice_size)
end

--- slice i (0-based, as diffusers) of x_res*hop - 1 samples
function Mel:get_audio_slice(i)
  i = i or 0
  local n = self:get_number_of_slices()
  if i < 0 or i >= n then error(string.format("mel: slice %d out of range 0..%d", i, n - 1), 2) end
  return self.audio:narrow(1, i * self.slice_size + 1, self.slice_size)
end

--- u8 image [y_res, x_res] of slice i: rows are mel bins, low to high
function Mel:audio_slice_to_image(i)
  return core.mel_image(self:get_audio_slice(i), self.config)
end

--- u8 [y_res, W] (or [1,1,H,W]) -> f32 audio. opts: generator (random
-- initial phases, drawn as torch.rand), init = "zero" (all phases 0,
-- deterministic; the default without a generator), angles_real /
-- angles_imag (given unit phasors), n_iter.
function Mel:image_to_audio(img, opts)
  local s = img:shape()
  if #s == 4 then img = img:view({s[3], s[4]}) end
  return core.mel_image_to_audio(img, self.config, opts)
end

-- ---------------------------------------------------------------------
-- Pipeline

local Pipe = {}
Pipe.__index = Pipe
M.Pipeline = Pipe

--- Loads an audio diffusion folder: unet/ (UNet2DModel), scheduler/,
-- mel_config.json (optional), vae/ (optional: latent audio diffusion).
function M.load(dir)
  local unet_cfg, unet_js = read_json(dir .. "/unet/config.json", "audio model")
  if not unet_cfg then
    error("audio model: " .. dir .. " has no unet/config.json (expected a diffusers audio diffusion folder)", 2)
  end
  local wfile
  for _, n in ipairs{"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"} do
    if read_file(dir .. "/unet/" .. n) then wfile = dir .. "/unet/" .. n; break end
  end
  if not wfile then error("audio model: no safetensors weights in " .. dir .. "/unet", 2) end
  local pipe = setmetatable({path = dir, config = {unet = unet_cfg}}, Pipe)
  pipe.unet = core.unet2d_load(unet_js, wfile)
  pipe.scheduler_config = read_json(dir .. "/scheduler/scheduler_config.json", "scheduler config") or {}
  pipe.mel = M.mel_config(dir, unet_cfg)
  local vae_cfg, vae_js = read_json(dir .. "/vae/config.json", "vae config")
  if vae_cfg then
    local P = require "lucid.pipeline"
    local w = core.weights_load(dir .. "/vae/diffusion_pytorch_model.safetensors", {layout = "diffusers_vae"})
    pipe.vae = P.VAE.new(core.vae_load(w, vae_js))
  end
  return pipe
end

--- The scheduler the model ships with (DDIM or DDPM), or `name`.
function Pipe:scheduler(name, overrides)
  local cls = self.scheduler_config._class_name
  name = name or (cls == "DDPMScheduler" and "ddpm" or "ddim")
  return require("lucid.schedulers").new(name, self.scheduler_config, overrides)
end

--- diffusers' default step counts: 1000 for DDPM, 50 for DDIM
function Pipe:default_steps(s)
  return s.name == "ddpm" and 1000 or 50
end

--- u8 image [H, W] -> model input [1, 1, H, W] in [-1, 1] (latent models:
-- the scaled VAE latent)
function Pipe:encode_image(img, generator)
  local s = img:shape()
  local x = (img:to("f32") / 255 * 2 - 1):view({1, 1, s[1], s[2]})
  if self.vae then
    x = self.vae:encode(((x + 1) / 2):view({1, 1, s[1], s[2]}), {generator = generator})
  end
  return x
end

--- model output [1, C, H, W] -> u8 [H, W] (round(clamp(x/2 + 0.5) * 255);
-- RGB outputs are converted to grey as PIL's convert("L"))
function Pipe:decode_image(x)
  local img
  if self.vae then
    img = self.vae:decode(x):clamp(0, 1)
  else
    img = (x / 2 + 0.5):clamp(0, 1)
  end
  local s = img:shape()
  if s[2] == 3 then
    local r, g, b = img:narrow(2, 1, 1), img:narrow(2, 2, 1), img:narrow(2, 3, 1)
    img = r * (299 / 1000) + g * (587 / 1000) + b * (114 / 1000)
  end
  return (img * 255):round():clamp(0, 255):to("u8"):view({s[3], s[4]})
end

--- The AudioDiffusionPipeline loop. opts: steps, scheduler (name or
-- object), generator (noise, DDPM/eta noise, random Griffin-Lim phases),
-- noise (a given start), eta (DDIM), image (u8 [H, W] spectrogram of an
-- input slice) with start_step (variations) and mask_start_secs /
-- mask_end_secs (columns kept from the input, re-imposed noised at each
-- step), on_step(i, n, t, x), gl (Griffin-Lim options; default: random
-- phases from the generator). Returns {image = u8, audio = f32, latents}.
function Pipe:generate(opts)
  opts = opts or {}
  local s = type(opts.scheduler) == "table" and opts.scheduler or self:scheduler(opts.scheduler)
  local steps = opts.steps or self:default_steps(s)
  s:set_timesteps(steps)
  local g = opts.generator
  local ucfg = self.unet:config()
  local ss = ucfg.sample_size
  local h, w = ss[1], ss[2]
  if h == 0 then h, w = self.mel.config.y_res, self.mel.config.x_res end
  local x = opts.noise
  if not x then
    if not g then error("audio diffusion: give a generator or the noise", 2) end
    local ch = ucfg.in_channels
    x = g:randn({1, ch, h, w})
  end
  local noise = x
  local start = opts.start_step or 0
  local ts = s.timesteps
  if start < 0 or start >= #ts then
    error(string.format("audio diffusion: start_step %d outside 0..%d", start, #ts - 1), 2)
  end
  local input, mask_start, mask_end = nil, 0, 0
  if opts.image then
    input = self:encode_image(opts.image, g)
    if start > 0 then x = s:add_noise(input, noise, ts[start]) end
    local pps = w * self.mel.config.sample_rate / self.mel.config.x_res / self.mel.config.hop_length
    mask_start = math.floor((opts.mask_start_secs or 0) * pps)
    mask_end = math.floor((opts.mask_end_secs or 0) * pps)
    if mask_start + mask_end > w then
      error(string.format("audio diffusion: the masks keep %d + %d columns of %d", mask_start, mask_end, w), 2)
    end
  end
  for i = start + 1, #ts do
    local t = ts[i]
    local eps = self.unet:forward(x, t)
    x = s:step(eps, t, x, g, opts.eta)
    if input and (mask_start > 0 or mask_end > 0) then
      -- diffusers re-imposes the input noised to this step's t
      local ref = s:add_noise(input, noise, t)
      local parts = {}
      if mask_start > 0 then parts[#parts + 1] = ref:narrow(4, 1, mask_start) end
      local mid = w - mask_start - mask_end
      if mid > 0 then parts[#parts + 1] = x:narrow(4, mask_start + 1, mid) end
      if mask_end > 0 then parts[#parts + 1] = ref:narrow(4, w - mask_end + 1, mask_end) end
      x = core.cat(parts, 4)
    end
    if opts.on_step then opts.on_step(i - start, #ts - start, t, x) end
  end
  local img = self:decode_image(x)
  local r = {image = img, latents = x}
  if opts.audio ~= false then
    local gl = opts.gl or (g and {generator = g}) or {init = "zero"}
    r.audio = self.mel:image_to_audio(img, gl)
  end
  return r
end

--- DDIM inversion of a spectrogram image to noise (diffusers'
-- DDIMInverseScheduler walk), returning the noise at the last timestep.
-- overrides: scheduler config keys (audio_invert turns clip_sample off,
-- whose clipping of x0 would make the walk lossy).
function Pipe:invert(img, steps, on_step, overrides)
  local inv = require("lucid.schedulers").new("ddim_inverse", self.scheduler_config, overrides)
  inv:set_timesteps(steps)
  local x = self:encode_image(img)
  for i, t in ipairs(inv.timesteps) do
    local eps = self.unet:forward(x, t)
    x = inv:step(eps, t, x)
    if on_step then on_step(i, #inv.timesteps, t, x) end
  end
  return x
end

-- ---------------------------------------------------------------------
-- Loops

--- A seamless loop of a whole number of beats from the start of `audio`
-- (1-D): the longest multiple of 4 beats (else of 1 beat) that fits,
-- with the audio past the cut cross-faded into the start over `fade`
-- seconds (default 10 ms) so the end runs on into the beginning.
-- Returns the loop and its number of beats.
function M.loop(audio, sample_rate, bpm, fade)
  if type(bpm) ~= "number" or bpm <= 0 then error("loop: bpm should be a positive number", 2) end
  local n = audio:shape()[1]
  local beat = 60 / bpm * sample_rate
  local fade_n = math.floor((fade or 0.01) * sample_rate)
  local beats = math.floor((n - fade_n) / beat)
  if beats >= 4 then beats = beats - beats % 4 end
  if beats < 1 then
    error(string.format("loop: %.2f s of audio is shorter than one beat at %g bpm", n / sample_rate, bpm), 2)
  end
  local len = math.floor(beats * beat + 0.5)
  local out = audio:narrow(1, 1, len):clone()
  local tail = math.min(fade_n, n - len)
  if tail > 0 then
    local ramp = core.linspace(0, 1, tail)
    local head = out:narrow(1, 1, tail)
    local after = audio:narrow(1, len + 1, tail)
    local mixed = head * ramp + after * (1 - ramp)
    out = core.cat({mixed, out:narrow(1, tail + 1, len - tail)}, 1)
  end
  return out, beats
end

return M
