-- Makes a Stable Diffusion checkpoint with random weights from a seed: the
-- full-size SD 1.5 (or SD 2.1, or a tiny test) architecture, as a CompVis/ldm
-- single .safetensors file (the key set of the released SD 1.5 / 2.1 files:
-- model.diffusion_model.*, first_stage_model.*, cond_stage_model.*) or a
-- diffusers folder with the real model folders' config files. Both layouts
-- hold the same values, so they must give identical outputs.
--
-- Values: the tensors are numbered 1..n in the byte order of their single-
-- file names; tensor k is scale * z + shift with z drawn from the seed
-- seed * 65536 + k: by default with lucid's parallel generator
-- (core.random_weights, approximately normal), with --rng torch as
-- torch.manual_seed(seed * 65536 + k); torch.randn(shape) (reproducible in
-- PyTorch, much slower). Weights get scale 1/sqrt(fan_in), norm scales
-- 1 + 0.1 z, biases, norm shifts and embeddings 0.02 z; the values are then
-- rounded to the chosen dtype. The diffusers tensors are views of the same
-- values (the VAE's 1x1-conv attention as [C, C]; SD 2.x's fused OpenCLIP
-- in_proj split into q, k, v).
local core = require "lucid.core"

local VAE = {blocks = {128, 256, 512, 512}, layers = 2, latent = 4}
local ARCH = {
  sd15 = {
    unet = {blocks = {320, 640, 1280, 1280}, attn = {true, true, true, false}, layers = 2,
            ctx = 768, linear = false},
    te = {kind = "clip", hidden = 768, layers = 12, ffn = 3072},
    vae = VAE,
  },
  sd21 = {
    unet = {blocks = {320, 640, 1280, 1280}, attn = {true, true, true, false}, layers = 2,
            ctx = 1024, linear = true},
    -- the released file holds all 24 resblocks; SD 2.x conditions on the
    -- penultimate layer, so the diffusers text encoder keeps 23
    te = {kind = "openclip", hidden = 1024, layers = 24, ffn = 4096},
    vae = VAE,
  },
  tiny = {
    unet = {blocks = {32, 64}, attn = {true, false}, layers = 1, ctx = 32, linear = false},
    te = {kind = "clip", hidden = 32, layers = 2, ffn = 37},
    vae = {blocks = {32, 64}, layers = 1, latent = 4},
  },
}

-- ---- the diffusers configs (the released model folders' files) ----

local function jlist(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = type(v) == "string" and ('"' .. v .. '"') or tostring(v) end
  return "[" .. table.concat(r, ", ") .. "]"
end

local function unet_json(a, sd21)
  local u, down, up = a.unet, {}, {}
  for i, at in ipairs(u.attn) do
    down[i] = at and "CrossAttnDownBlock2D" or "DownBlock2D"
    up[#u.attn + 1 - i] = at and "CrossAttnUpBlock2D" or "UpBlock2D"
  end
  local heads = sd21 and "[5, 10, 20, 20]" or "8"
  local extra = sd21 and '  "dual_cross_attention": false,\n  "use_linear_projection": true,\n' ..
                '  "upcast_attention": true,\n  "num_class_embeds": null,\n' or ""
  return string.format([[{
  "_class_name": "UNet2DConditionModel",
  "_diffusers_version": "%s",
  "act_fn": "silu",
  "attention_head_dim": %s,
  "block_out_channels": %s,
  "center_input_sample": false,
  "cross_attention_dim": %d,
  "down_block_types": %s,
  "downsample_padding": 1,
%s  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "in_channels": 4,
  "layers_per_block": %d,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "out_channels": 4,
  "sample_size": %d,
  "up_block_types": %s
}
]], sd21 and "0.10.0.dev0" or "0.6.0", heads, jlist(u.blocks), u.ctx, jlist(down), extra,
    u.layers, sd21 and 96 or 64, jlist(up))
end

local function vae_json(a, sd21)
  local v, down, up = a.vae, {}, {}
  for i = 1, #v.blocks do down[i], up[i] = "DownEncoderBlock2D", "UpDecoderBlock2D" end
  return string.format([[{
  "_class_name": "AutoencoderKL",
  "_diffusers_version": "%s",
  "act_fn": "silu",
  "block_out_channels": %s,
  "down_block_types": %s,
  "in_channels": 3,
  "latent_channels": %d,
  "layers_per_block": %d,
  "norm_num_groups": 32,
  "out_channels": 3,
  "sample_size": %d,
  "up_block_types": %s
}
]], sd21 and "0.8.0" or "0.6.0", jlist(v.blocks), jlist(down), v.latent, v.layers,
    sd21 and 768 or 512, jlist(up))
end

local function te_json(a)
  local t = a.te
  if t.kind == "openclip" then
    return string.format([[{
  "architectures": ["CLIPTextModel"],
  "attention_dropout": 0.0,
  "bos_token_id": 0,
  "dropout": 0.0,
  "eos_token_id": 2,
  "hidden_act": "gelu",
  "hidden_size": %d,
  "initializer_factor": 1.0,
  "initializer_range": 0.02,
  "intermediate_size": %d,
  "layer_norm_eps": 1e-05,
  "max_position_embeddings": 77,
  "model_type": "clip_text_model",
  "num_attention_heads": 16,
  "num_hidden_layers": %d,
  "pad_token_id": 1,
  "projection_dim": 512,
  "torch_dtype": "float32",
  "transformers_version": "4.25.0.dev0",
  "vocab_size": 49408
}
]], t.hidden, t.ffn, t.layers - 1)
  end
  return string.format([[{
  "_name_or_path": "openai/clip-vit-large-patch14",
  "architectures": ["CLIPTextModel"],
  "attention_dropout": 0.0,
  "bos_token_id": 0,
  "dropout": 0.0,
  "eos_token_id": 2,
  "hidden_act": "quick_gelu",
  "hidden_size": %d,
  "initializer_factor": 1.0,
  "initializer_range": 0.02,
  "intermediate_size": %d,
  "layer_norm_eps": 1e-05,
  "max_position_embeddings": 77,
  "model_type": "clip_text_model",
  "num_attention_heads": %d,
  "num_hidden_layers": %d,
  "pad_token_id": 1,
  "projection_dim": 768,
  "torch_dtype": "float32",
  "transformers_version": "4.22.0.dev0",
  "vocab_size": 49408
}
]], t.hidden, t.ffn, t.hidden == 768 and 12 or 4, t.layers)
end

local function scheduler_json(sd21)
  if sd21 then
    return [[{
  "_class_name": "DDIMScheduler",
  "_diffusers_version": "0.8.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "clip_sample": false,
  "num_train_timesteps": 1000,
  "prediction_type": "v_prediction",
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null
}
]]
  end
  return [[{
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null,
  "clip_sample": false
}
]]
end

local MODEL_INDEX = [[{
  "_class_name": "StableDiffusionPipeline",
  "_diffusers_version": "0.6.0",
  "feature_extractor": [null, null],
  "safety_checker": [null, null],
  "scheduler": ["diffusers", "%s"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"]
}
]]

-- ---- the tensors: single-file name, shape, kind, and where each goes in
-- the diffusers layout ----

local list -- {l = ldm name, shape, kind, d = {{comp, name, view-fn|nil}, ...}}

local function add(l, shape, kind, comp, d, view)
  list[#list + 1] = {l = l, shape = shape, kind = kind, d = comp and {{comp, d, view}} or {}}
  return list[#list]
end

-- weight + bias of a conv (k > 0) or linear (k == 0) layer
local function wb(lp, dp, comp, out, inn, k, nobias)
  local shape = k > 0 and {out, inn, k, k} or {out, inn}
  add(lp .. ".weight", shape, "w", comp, dp .. ".weight")
  if not nobias then add(lp .. ".bias", {out}, "b", comp, dp .. ".bias") end
end

local function norm(lp, dp, comp, c)
  add(lp .. ".weight", {c}, "n", comp, dp .. ".weight")
  add(lp .. ".bias", {c}, "b", comp, dp .. ".bias")
end

-- ---- UNet (diffusers -> ldm as diffusers' convert_diffusers_to_original_
-- stable_diffusion.py maps them) ----

local UP = "model.diffusion_model."

local function unet_resnet(lp, dp, cin, cout, temb)
  norm(UP .. lp .. "in_layers.0", dp .. "norm1", "unet", cin)
  wb(UP .. lp .. "in_layers.2", dp .. "conv1", "unet", cout, cin, 3)
  wb(UP .. lp .. "emb_layers.1", dp .. "time_emb_proj", "unet", cout, temb, 0)
  norm(UP .. lp .. "out_layers.0", dp .. "norm2", "unet", cout)
  wb(UP .. lp .. "out_layers.3", dp .. "conv2", "unet", cout, cout, 3)
  if cin ~= cout then wb(UP .. lp .. "skip_connection", dp .. "conv_shortcut", "unet", cout, cin, 1) end
end

local function unet_transformer(lp, dp, c, u)
  local function both(s) return UP .. lp .. s, dp .. s end
  local function n(s) local a, b = both(s); norm(a, b, "unet", c) end
  local function lin(s, out, inn, nobias) local a, b = both(s); wb(a, b, "unet", out, inn, 0, nobias) end
  n("norm")
  do local a, b = both("proj_in"); wb(a, b, "unet", c, c, u.linear and 0 or 1) end
  local tb = "transformer_blocks.0."
  for _, at in ipairs{"attn1", "attn2"} do
    local kv = at == "attn1" and c or u.ctx
    lin(tb .. at .. ".to_q", c, c, true)
    lin(tb .. at .. ".to_k", c, kv, true)
    lin(tb .. at .. ".to_v", c, kv, true)
    lin(tb .. at .. ".to_out.0", c, c)
  end
  n(tb .. "norm1"); n(tb .. "norm2"); n(tb .. "norm3")
  lin(tb .. "ff.net.0.proj", 8 * c, c)
  lin(tb .. "ff.net.2", c, 4 * c)
  do local a, b = both("proj_out"); wb(a, b, "unet", c, c, u.linear and 0 or 1) end
end

local function unet_tensors(u)
  local b, L, n = u.blocks, u.layers, #u.blocks
  local temb = 4 * b[1]
  wb(UP .. "time_embed.0", "time_embedding.linear_1", "unet", temb, b[1], 0)
  wb(UP .. "time_embed.2", "time_embedding.linear_2", "unet", temb, temb, 0)
  wb(UP .. "input_blocks.0.0", "conv_in", "unet", b[1], 4, 3)
  local cin = b[1]
  for i = 0, n - 1 do
    local c = b[i + 1]
    for j = 0, L - 1 do
      local ib = (L + 1) * i + j + 1
      unet_resnet("input_blocks." .. ib .. ".0.", ("down_blocks.%d.resnets.%d."):format(i, j),
                  j == 0 and cin or c, c, temb)
      if u.attn[i + 1] then
        unet_transformer("input_blocks." .. ib .. ".1.", ("down_blocks.%d.attentions.%d."):format(i, j), c, u)
      end
    end
    if i < n - 1 then
      wb(UP .. "input_blocks." .. (L + 1) * (i + 1) .. ".0.op",
         ("down_blocks.%d.downsamplers.0.conv"):format(i), "unet", c, c, 3)
    end
    cin = c
  end
  local m = b[n]
  unet_resnet("middle_block.0.", "mid_block.resnets.0.", m, m, temb)
  unet_transformer("middle_block.1.", "mid_block.attentions.0.", m, u)
  unet_resnet("middle_block.2.", "mid_block.resnets.1.", m, m, temb)
  local prev = b[n]
  for i = 0, n - 1 do
    local c = b[n - i]
    local skip_last = b[math.max(n - i - 1, 1)]
    local attn = u.attn[n - i]
    for j = 0, L do
      local ob = (L + 1) * i + j
      local skip = j == L and skip_last or c
      local rin = j == 0 and prev or c
      unet_resnet("output_blocks." .. ob .. ".0.", ("up_blocks.%d.resnets.%d."):format(i, j),
                  rin + skip, c, temb)
      if attn then
        unet_transformer("output_blocks." .. ob .. ".1.", ("up_blocks.%d.attentions.%d."):format(i, j), c, u)
      end
    end
    if i < n - 1 then
      wb(UP .. "output_blocks." .. (L + 1) * i + L .. "." .. (attn and 2 or 1) .. ".conv",
         ("up_blocks.%d.upsamplers.0.conv"):format(i), "unet", c, c, 3)
    end
    prev = c
  end
  norm(UP .. "out.0", "conv_norm_out", "unet", b[1])
  wb(UP .. "out.2", "conv_out", "unet", 4, b[1], 3)
end

-- ---- VAE (first_stage_model.*; attention as 1x1 convs, as the original
-- ldm code stores it) ----

local VP = "first_stage_model."

local function vae_resnet(lp, dp, cin, cout)
  norm(VP .. lp .. "norm1", dp .. "norm1", "vae", cin)
  wb(VP .. lp .. "conv1", dp .. "conv1", "vae", cout, cin, 3)
  norm(VP .. lp .. "norm2", dp .. "norm2", "vae", cout)
  wb(VP .. lp .. "conv2", dp .. "conv2", "vae", cout, cout, 3)
  if cin ~= cout then wb(VP .. lp .. "nin_shortcut", dp .. "conv_shortcut", "vae", cout, cin, 1) end
end

local function vae_mid(side, c)
  local lp, dp = side .. ".mid.", side .. ".mid_block."
  vae_resnet(lp .. "block_1.", dp .. "resnets.0.", c, c)
  norm(VP .. lp .. "attn_1.norm", dp .. "attentions.0.group_norm", "vae", c)
  for _, p in ipairs{{"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}} do
    add(VP .. lp .. "attn_1." .. p[1] .. ".weight", {c, c, 1, 1}, "w", "vae",
        dp .. "attentions.0." .. p[2] .. ".weight", function(t) return t:view{c, c} end)
    add(VP .. lp .. "attn_1." .. p[1] .. ".bias", {c}, "b", "vae", dp .. "attentions.0." .. p[2] .. ".bias")
  end
  vae_resnet(lp .. "block_2.", dp .. "resnets.1.", c, c)
end

local function vae_tensors(v)
  local b, L, n, z = v.blocks, v.layers, #v.blocks, v.latent
  wb(VP .. "encoder.conv_in", "encoder.conv_in", "vae", b[1], 3, 3)
  local cin = b[1]
  for i = 0, n - 1 do
    local c = b[i + 1]
    for j = 0, L - 1 do
      vae_resnet(("encoder.down.%d.block.%d."):format(i, j),
                 ("encoder.down_blocks.%d.resnets.%d."):format(i, j), j == 0 and cin or c, c)
    end
    if i < n - 1 then
      wb(VP .. ("encoder.down.%d.downsample.conv"):format(i),
         ("encoder.down_blocks.%d.downsamplers.0.conv"):format(i), "vae", c, c, 3)
    end
    cin = c
  end
  vae_mid("encoder", b[n])
  norm(VP .. "encoder.norm_out", "encoder.conv_norm_out", "vae", b[n])
  wb(VP .. "encoder.conv_out", "encoder.conv_out", "vae", 2 * z, b[n], 3)
  wb(VP .. "quant_conv", "quant_conv", "vae", 2 * z, 2 * z, 1)
  wb(VP .. "post_quant_conv", "post_quant_conv", "vae", z, z, 1)
  wb(VP .. "decoder.conv_in", "decoder.conv_in", "vae", b[n], z, 3)
  vae_mid("decoder", b[n])
  local prev = b[n]
  for i = 0, n - 1 do
    local c, lvl = b[n - i], n - 1 - i
    for j = 0, L do
      vae_resnet(("decoder.up.%d.block.%d."):format(lvl, j),
                 ("decoder.up_blocks.%d.resnets.%d."):format(i, j), j == 0 and prev or c, c)
    end
    if i < n - 1 then
      wb(VP .. ("decoder.up.%d.upsample.conv"):format(lvl),
         ("decoder.up_blocks.%d.upsamplers.0.conv"):format(i), "vae", c, c, 3)
    end
    prev = c
  end
  norm(VP .. "decoder.norm_out", "decoder.conv_norm_out", "vae", b[1])
  wb(VP .. "decoder.conv_out", "decoder.conv_out", "vae", 3, b[1], 3)
end

-- ---- text encoders ----

local function clip_tensors(t)
  local lp, H, F = "cond_stage_model.transformer.", t.hidden, t.ffn
  local function n(s) norm(lp .. s, s, "te", H) end
  add(lp .. "text_model.embeddings.token_embedding.weight", {49408, H}, "e", "te",
      "text_model.embeddings.token_embedding.weight")
  add(lp .. "text_model.embeddings.position_embedding.weight", {77, H}, "e", "te",
      "text_model.embeddings.position_embedding.weight")
  for i = 0, t.layers - 1 do
    local p = "text_model.encoder.layers." .. i .. "."
    for _, s in ipairs{"q_proj", "k_proj", "v_proj", "out_proj"} do
      wb(lp .. p .. "self_attn." .. s, p .. "self_attn." .. s, "te", H, H, 0)
    end
    n(p .. "layer_norm1"); n(p .. "layer_norm2")
    wb(lp .. p .. "mlp.fc1", p .. "mlp.fc1", "te", F, H, 0)
    wb(lp .. p .. "mlp.fc2", p .. "mlp.fc2", "te", H, F, 0)
  end
  n("text_model.final_layer_norm")
end

-- SD 2.x: OpenCLIP's text tower under cond_stage_model.model.*; the
-- diffusers CLIPTextModel drops its last layer and the projection
local function openclip_tensors(t)
  local lp, H, F = "cond_stage_model.model.", t.hidden, t.ffn
  add(lp .. "token_embedding.weight", {49408, H}, "e", "te", "text_model.embeddings.token_embedding.weight")
  add(lp .. "positional_embedding", {77, H}, "e", "te", "text_model.embeddings.position_embedding.weight")
  for i = 0, t.layers - 1 do
    local keep = i < t.layers - 1
    local rp, dp = lp .. "transformer.resblocks." .. i .. ".", "text_model.encoder.layers." .. i .. "."
    local function c(comp) return keep and comp or nil end
    norm(rp .. "ln_1", dp .. "layer_norm1", c "te", H)
    norm(rp .. "ln_2", dp .. "layer_norm2", c "te", H)
    local w = add(rp .. "attn.in_proj_weight", {3 * H, H}, "w")
    local b = add(rp .. "attn.in_proj_bias", {3 * H}, "b")
    if keep then
      for k, s in ipairs{"q_proj", "k_proj", "v_proj"} do
        w.d[k] = {"te", dp .. "self_attn." .. s .. ".weight", function(x) return x:narrow(1, (k - 1) * H + 1, H) end}
        b.d[k] = {"te", dp .. "self_attn." .. s .. ".bias", function(x) return x:narrow(1, (k - 1) * H + 1, H) end}
      end
    end
    wb(rp .. "attn.out_proj", dp .. "self_attn.out_proj", c "te", H, H, 0)
    wb(rp .. "mlp.c_fc", dp .. "mlp.fc1", c "te", F, H, 0)
    wb(rp .. "mlp.c_proj", dp .. "mlp.fc2", c "te", H, F, 0)
  end
  norm(lp .. "ln_final", "text_model.final_layer_norm", "te", H)
  add(lp .. "text_projection", {H, H}, "w")
  add(lp .. "logit_scale", {}, "s")
end

local function tensor_list(a)
  list = {}
  unet_tensors(a.unet)
  vae_tensors(a.vae)
  if a.te.kind == "openclip" then openclip_tensors(a.te) else clip_tensors(a.te) end
  table.sort(list, function(x, y) return x.l < y.l end)
  return list
end

-- ---- values ----

-- scale and shift of each kind of tensor
local function law(e)
  if e.kind == "w" then
    local fan = 1
    for i = 2, #e.shape do fan = fan * e.shape[i] end
    return 1 / math.sqrt(fan), 0
  elseif e.kind == "n" then return 0.1, 1
  elseif e.kind == "s" then return 0, math.log(100) -- CLIP's logit scale, as trained
  end
  return 0.02, 0
end

local function values(lucid, e, k, opts)
  local scale, shift = law(e)
  local shape = #e.shape > 0 and e.shape or {1}
  local out
  if opts.rng == "torch" then
    local t = lucid.randn(shape, opts.seed * 65536 + k)
    local r = t * scale + shift
    t:free()
    out = r:to(opts.dtype)
    r:free() -- tensors are references: out keeps its storage
  else
    out = core.random_weights(shape, opts.seed * 65536 + k, scale, shift, opts.dtype)
  end
  if #e.shape == 0 then out = out:view{} end
  return out
end

local function mkdir(dir)
  if core.sys.file_type(dir) == "directory" then return end
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  if core.sys.file_type(dir) ~= "directory" then error("make_checkpoint: cannot create " .. dir, 0) end
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

return {
  name = "make_checkpoint",
  description = "write a Stable Diffusion checkpoint with random weights from a seed " ..
                "(single ldm .safetensors or diffusers folder)",
  options = {
    {"arch", type = "string", default = "sd15", choices = {"sd15", "sd21", "tiny"},
     help = "architecture: full-size SD 1.5, SD 2.1 (768-v), or a tiny test model"},
    {"layout", type = "string", default = "single", choices = {"single", "diffusers", "both"},
     help = "single: one .safetensors with CompVis/ldm names (OUT is the file); diffusers: a " ..
            "model folder (OUT is the folder); both: OUT/model.safetensors and OUT/diffusers"},
    {"dtype", type = "string", default = "f16", choices = {"f16", "f32", "bf16"},
     help = "stored dtype"},
    {"seed", type = "int", default = 0, min = 0, max = 2 ^ 36, help = "weights seed"},
    {"rng", type = "string", default = "fast", choices = {"fast", "torch"},
     help = "fast: lucid's parallel generator; torch: torch.randn after torch.manual_seed " ..
            "(reproducible in PyTorch, ~20x slower)"},
    {"out", type = "path", required = true, help = "output file or folder"},
    "quiet",
  },
  run = function(opts, lucid)
    local a = ARCH[opts.arch]
    local sd21 = opts.arch == "sd21"
    if sd21 and opts.layout ~= "single" then
      error("make_checkpoint: --arch sd21 is made as a single file only (its diffusers " ..
            "tokenizer pads differently from the bundled one)", 0)
    end
    local single, folder = nil, nil
    if opts.layout == "single" then single = opts.out
    elseif opts.layout == "diffusers" then folder = opts.out
    else single, folder = opts.out .. "/model.safetensors", opts.out .. "/diffusers" end
    if single and not single:match("%.safetensors$") then
      error("make_checkpoint: the single file's name must end in .safetensors (got " .. single .. ")", 0)
    end
    local es = tensor_list(a)
    local ldm, comps, n, bytes = {}, {unet = {}, vae = {}, te = {}}, 0, 0
    local t0 = os.time()
    for k, e in ipairs(es) do
      local t = values(lucid, e, k, opts)
      ldm[e.l] = t
      for _, d in ipairs(e.d) do comps[d[1]][d[2]] = d[3] and d[3](t) or t end
      n, bytes = n + t:numel(), bytes + t:nbytes()
    end
    if not opts.quiet then
      io.stderr:write(string.format("make_checkpoint: %s, %d tensors, %.3f G parameters, %.2f GB %s (%ds)\n",
                                    opts.arch, #es, n / 1e9, bytes / 1e9, opts.dtype, os.time() - t0))
    end
    local meta = {format = "pt", lucid_random_seed = tostring(opts.seed), lucid_arch = opts.arch}
    if single then
      local dir = single:match("^(.*)/[^/]+$")
      if dir then mkdir(dir) end
      lucid.safetensors.save(single, ldm, meta)
    end
    ldm = nil
    if folder then
      for _, s in ipairs{"", "/unet", "/vae", "/text_encoder", "/scheduler", "/tokenizer"} do
        mkdir(folder .. s)
      end
      write(folder .. "/model_index.json", MODEL_INDEX:format("PNDMScheduler"))
      write(folder .. "/unet/config.json", unet_json(a, sd21))
      write(folder .. "/vae/config.json", vae_json(a, sd21))
      write(folder .. "/text_encoder/config.json", te_json(a))
      write(folder .. "/scheduler/scheduler_config.json", scheduler_json(sd21))
      local tok = core.paths.home .. "/data/clip"
      for _, f in ipairs{"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"} do
        local src = io.open(tok .. "/" .. f, "rb")
        if src then
          write(folder .. "/tokenizer/" .. f, src:read("*a"))
          src:close()
        end
      end
      lucid.safetensors.save(folder .. "/unet/diffusion_pytorch_model.safetensors", comps.unet, meta)
      lucid.safetensors.save(folder .. "/vae/diffusion_pytorch_model.safetensors", comps.vae, meta)
      lucid.safetensors.save(folder .. "/text_encoder/model.safetensors", comps.te, meta)
    end
    if not opts.quiet then
      io.stderr:write(string.format("make_checkpoint: wrote %s (%ds)\n", opts.out, os.time() - t0))
    end
    return 0
  end,
}
