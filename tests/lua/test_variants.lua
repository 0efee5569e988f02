-- Model configurations unlike the golden tiny-a, each against a PyTorch
-- reference (tools/ref/make_variants.py: ref_models.py, itself checked
-- against tiny-a's diffusers golden data by validate_golden.py):
--   unet        three levels, per-block head dims [2,4,8], linear projection,
--               two transformer layers per block, 48-wide context,
--               upcast attention, an odd 6x10 latent, f16 weights
--   controlnet  that UNet's ControlNet with explicit num_attention_heads and
--               a four-level conditioning embedding, scale 0.7
--   text_encoder  exact GELU, 3 layers, 2 heads, vocabulary 1000, legacy
--               eos_token_id 2 (pool at argmax), clip_skip
--   vae         two levels, two resnets per encoder level, 12x20 image
--   unet2d      UNet2DModel, attention in the first/last blocks, 8 groups
local T = require "testlib"
local lucid = require "lucid"
local core = require "lucid.core"

local root = T.data("variants")
local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end
local function ref(name) return lucid.safetensors.load(root .. "/" .. name .. "/ref.safetensors") end

local function check(label, got, want, tol)
  T.eq(table.concat(got:shape(), "x"), table.concat(want:shape(), "x"), label .. " shape")
  local d, m = T.maxdiff(got, want), want:abs():max():item()
  print(string.format("# %-28s max|diff| %.3g rel %.3g", label, d, d / m))
  T.truthy(d <= tol * m, string.format("%s: relative error %.3g > %g", label, d / m, tol))
end

T.case("unet: 3 levels, head dims per block, linear projection, 2 layers, upcast", function()
  local dir = root .. "/unet"
  local R = ref("unet")
  local u = core.unet_load_file(dir .. "/diffusion_pytorch_model.safetensors", read(dir .. "/config.json"))
  local y = u:forward(R.sample, R.timestep, R.encoder_hidden_states)
  check("unet out", y, R.out, 1e-4)
  -- per-sample timesteps (both equal) give the same bits as a scalar one
  local t2 = lucid.tensor({R.timestep:item(), R.timestep:item()}, "i64")
  T.eq(T.maxdiff(u:forward(R.sample, t2, R.encoder_hidden_states), y), 0, "per-sample timesteps")
end)

T.case("controlnet: explicit num_attention_heads, 4-level conditioning embedding", function()
  local R = ref("controlnet")
  local cn = lucid.controlnet(root .. "/controlnet")
  T.eq(cn.config.conditioning_factor, 8)
  local down, mid = cn:forward(R.sample, R.timestep, R.encoder_hidden_states, R.controlnet_cond,
                               R.conditioning_scale:item())
  local n = 0
  while R["down_res/" .. n] do n = n + 1 end
  T.eq(#down, n, "number of down residuals")
  for i = 1, n do check("down_res/" .. (i - 1), down[i], R["down_res/" .. (i - 1)], 1e-4) end
  check("mid_res", mid, R.mid_res, 1e-4)
  local udir = root .. "/unet"
  local u = core.unet_load_file(udir .. "/diffusion_pytorch_model.safetensors", read(udir .. "/config.json"))
  local y = u:forward(R.sample, R.timestep, R.encoder_hidden_states, {down_residuals = down, mid_residual = mid})
  check("unet out with residuals", y, R.unet_out, 1e-4)
end)

T.case("text encoder: exact gelu, 3 layers, argmax pooling, clip_skip", function()
  local dir = root .. "/text_encoder"
  local R = ref("text_encoder")
  local w = core.weights_load(dir .. "/model.safetensors", {layout = "diffusers_clip"})
  local te = core.clip_text_load(w, read(dir .. "/config.json"))
  local h, pooled = te:forward_all(R.input_ids)
  check("last_hidden_state", h, R.last_hidden_state, 1e-5)
  check("pooler_output", pooled, R.pooler_output, 1e-5)
  check("clip_skip 1 (penultimate)", te:forward(R.input_ids, {clip_skip = 1}), R.clip_skip1, 1e-5)
  T.raises(function() te:forward(R.input_ids, {clip_skip = 3}) end, "clip_skip 3 out of range")
end)

T.case("vae: two levels, encoder moments and decode of an odd-sized latent", function()
  local dir = root .. "/vae"
  local R = ref("vae")
  local w = core.weights_load(dir .. "/diffusion_pytorch_model.safetensors", {layout = "diffusers_vae"})
  local vae = core.vae_load(w, read(dir .. "/config.json"))
  local mean, logvar = vae:encode_moments(R.image)
  check("encode mean", mean, R.mean, 1e-4)
  check("encode logvar", logvar, R.logvar, 1e-4)
  check("decode", vae:decode_raw(R.decode_in), R.decode_out, 1e-4)
end)

T.case("unet2d: attention blocks, 8 groups, 16x24 sample", function()
  local dir = root .. "/unet2d"
  local R = ref("unet2d")
  local u = core.unet2d_load(read(dir .. "/config.json"), dir .. "/diffusion_pytorch_model.safetensors")
  check("unet2d out", u:forward(R.sample, R.timestep), R.out, 1e-4)
end)

T.done()
