-- lucid.load, pipe.text_encoder, pipe.vae, pipe:encode_prompt and TAESD
-- through the API.md names, against the tiny-a golden outputs in both
-- checkpoint layouts; loading errors; TAESD round trip on a real photo.
local T = require "testlib"
local lucid = require "lucid"

local DIR = T.data("golden/tiny-a")
local LDM = DIR .. "/model_ldm.safetensors"
local G = lucid.safetensors.load(DIR .. "/golden.safetensors")

-- max|a-b| <= 1e-4 max|ref|, printed
local function close(what, got, ref)
  local d, m = T.maxdiff(got, ref), ref:abs():max():item()
  print(string.format("  %-44s max|diff| %.3g  max|ref| %.3g", what, d, m))
  T.truthy(d <= 1e-4 * m, what .. ": max abs diff " .. d .. " > 1e-4 * " .. m)
end

-- copy of the single file with edits, written with lucid.safetensors.save
local function edited_copy(edit)
  local t = lucid.safetensors.load(LDM)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  edit(out)
  local path = os.tmpname() .. ".safetensors"
  lucid.safetensors.save(path, out)
  return path
end

local pipes = {
  diffusers = lucid.load(DIR),
  ldm = lucid.load(LDM, {config = DIR}),
}

for layout, pipe in pairs(pipes) do
  T.case(layout .. ": text encoder golden (last hidden, pooled, clip skip 1)", function()
    for k = 0, 1 do
      local p = "text_encoder/" .. k .. "/"
      local ids = G[p .. "input_ids"]
      close(layout .. " " .. p .. "forward", pipe.text_encoder:forward(ids), G[p .. "last_hidden_state"])
      local h, pooled = pipe.text_encoder:forward_all(ids)
      close(layout .. " " .. p .. "last_hidden_state", h, G[p .. "last_hidden_state"])
      close(layout .. " " .. p .. "pooler_output", pooled, G[p .. "pooler_output"])
      close(layout .. " " .. p .. "clip_skip1", pipe.text_encoder:forward(ids, {clip_skip = 1}),
            G[p .. "clip_skip1"])
    end
  end)

  T.case(layout .. ": encode_prompt = tokenizer + text encoder", function()
    local e = pipe:encode_prompt("a painting of a fox in the snow, trending on artstation")
    T.eq(e:shape()[2], 77); T.eq(e:shape()[3], 32)
    close(layout .. " encode_prompt", e, G["text_encoder/1/last_hidden_state"])
    close(layout .. " encode_prompt clip_skip 1",
          pipe:encode_prompt("a photo of a cat", {clip_skip = 1}), G["text_encoder/0/clip_skip1"])
  end)

  T.case(layout .. ": vae golden (moments, decode, scaling)", function()
    local vae = pipe.vae
    T.near(vae.scaling_factor, 0.18215, 1e-9)
    local img01 = (G["vae/image"] + 1) / 2 -- golden images are in [-1,1]
    local mean, logvar = vae:encode_moments(img01)
    close(layout .. " vae/mean", mean, G["vae/mean"])
    close(layout .. " vae/logvar", logvar, G["vae/logvar"])
    close(layout .. " vae:encode = mean * scaling_factor", vae:encode(img01),
          G["vae/mean"] * 0.18215)
    -- sampling: mean + std * noise, the noise drawn from the given generator
    local noise = lucid.generator(7):randn({1, 4, 8, 8})
    local want = (G["vae/mean"] + (G["vae/logvar"] * 0.5):exp() * noise) * 0.18215
    close(layout .. " vae:encode sampled", vae:encode(img01, {generator = lucid.generator(7)}), want)
    close(layout .. " vae/decode_out", vae:decode_raw(G["vae/decode_in"]), G["vae/decode_out"])
    local img = vae:decode(G["vae/decode_in"] * 0.18215)
    close(layout .. " vae:decode in [0,1]", img, ((G["vae/decode_out"] + 1) / 2):clamp(0, 1))
    T.truthy(img:min():item() >= 0 and img:max():item() <= 1)
  end)
end

-- the whole tiny pipeline (prompt -> embeddings -> DDIM with CFG -> VAE)
-- against the golden StableDiffusionPipeline run, in both layouts
for layout, pipe in pairs(pipes) do
  T.case(layout .. ": txt2img end to end (DDIM, 10 steps, CFG 7.5)", function()
    local pos = pipe:encode_prompt("a painting of a fox in the snow, trending on artstation")
    local neg = pipe:encode_prompt("blurry, low quality")
    close(layout .. " embeds/positive", pos, G["embeds/positive"])
    close(layout .. " embeds/negative", neg, G["embeds/negative"])
    local s = lucid.scheduler("ddim", pipe)
    s:set_timesteps(10)
    local x = G["txt2img/init_latents"] * s.init_noise_sigma
    local ctx = lucid.cat({neg, pos}, 1)
    for _, t in ipairs(s.timesteps) do
      local eps = pipe.unet:forward(s:scale_model_input(lucid.cat({x, x}, 1), t), t, ctx)
      local e_neg, e_pos = eps:narrow(1, 1, 1), eps:narrow(1, 2, 1)
      x = s:step(e_neg + (e_pos - e_neg) * 7.5, t, x)
    end
    close(layout .. " txt2img final_latents", x, G["txt2img/DDIMScheduler/final_latents"])
    close(layout .. " txt2img decoded", pipe.vae:decode_raw(x / pipe.vae.scaling_factor),
          G["txt2img/DDIMScheduler/decoded"])
  end)
end

T.case("single file without a config folder: inferred configs, SD 1.x defaults", function()
  -- tiny-a's 32-wide text encoder has no inferable head count
  T.raises(function() lucid.load(LDM, {unet = false, config = false}) end,
           "model_ldm.safetensors: text encoder: cannot infer the attention head count")
  local w = lucid.weights_load(LDM, {layout = "ldm_vae"})
  local vae = lucid.pipeline.VAE.new(lucid.vae_load(w))
  T.eq(vae.config.latent_channels, 4)
  T.eq(#vae.config.block_out_channels, 4)
  close("inferred vae/decode_out", vae:decode_raw(G["vae/decode_in"]), G["vae/decode_out"])
  -- a 64-wide tower is inferred (one head): the text encoder, the bundled
  -- vocabulary and the SD 1.x scheduler defaults load
  local path = edited_copy(function(t)
    local P = "cond_stage_model.transformer.text_model."
    for k, v in pairs(t) do
      if k:sub(1, #P) == P then
        local s = v:shape()
        for i = 1, #s do if s[i] == 32 then s[i] = 64 elseif s[i] == 64 then s[i] = 128 end end
        t[k] = lucid.zeros(s)
      end
    end
  end)
  local p = lucid.load(path, {unet = false})
  T.eq(p.config.text_encoder.num_attention_heads, 1)
  T.eq(p.config.text_encoder.num_hidden_layers, 2)
  T.eq(p.config.text_encoder.hidden_size, 64)
  T.eq(p.scheduler_config._class_name, "PNDMScheduler")
  T.eq(p.scheduler_config.steps_offset, 1)
  T.eq(p.tokenizer:encode("a photo of a cat"):shape()[2], 77)
  T.eq(p:encode_prompt("a photo of a cat"):shape()[3], 64)
  os.remove(path)
end)

T.case("a single file inside a diffusers folder takes that folder's configs", function()
  local p = lucid.load(LDM)
  T.eq(p.config.unet.attention_head_dim, 4)
  T.eq(p.config.text_encoder.num_attention_heads, 4)
  close("single file unet/t801", p.unet:forward(G["unet/t801/sample"], G["unet/t801/timestep"],
        G["unet/t801/encoder_hidden_states"]), G["unet/t801/out"])
end)

T.case("pipe.config and scheduler_config from the folder", function()
  local p = pipes.diffusers
  T.eq(p.config.model_index._class_name, "StableDiffusionPipeline")
  T.eq(p.config.unet.cross_attention_dim, 32)
  T.eq(p.scheduler_config.beta_schedule, "scaled_linear")
  T.eq(p.vae_scale_factor, 8)
end)

T.case("missing tensor reported by name with its expected shape", function()
  local path = edited_copy(function(t)
    t["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = nil
  end)
  T.raises(function() lucid.load(path, {config = DIR}) end,
           "text encoder: missing tensor text_model.final_layer_norm.weight (expected [32])")
  os.remove(path)
  path = edited_copy(function(t) t["first_stage_model.decoder.conv_out.weight"] = nil end)
  T.raises(function() lucid.load(path, {config = DIR}) end,
           "vae: missing tensor decoder.conv_out.weight (expected [3,32,3,3]) " ..
           "(prefixed first_stage_model. in the checkpoint)")
  -- also when the config is inferred from the remaining shapes
  T.raises(function() lucid.vae_load(lucid.weights_load(path, {layout = "ldm_vae"})) end,
           "vae: missing tensor decoder.conv_out.weight (expected [3,32,3,3])")
  os.remove(path)
  -- ldm counts up blocks the other way round: both names are given
  path = edited_copy(function(t)
    t["first_stage_model.decoder.up.0.block.1.norm2.bias"] = nil
  end)
  T.raises(function() lucid.load(path, {config = DIR}) end,
           "vae: missing tensor decoder.up_blocks.3.resnets.1.norm2.bias (expected [32]) " ..
           "(first_stage_model.decoder.up.0.block.1.norm2.bias in the checkpoint)")
  os.remove(path)
end)

T.case("unexpected and mis-shaped tensors reported by name", function()
  local path = edited_copy(function(t)
    t["first_stage_model.encoder.mid.attn_1.extra.weight"] = lucid.zeros({2})
  end)
  T.raises(function() lucid.load(path, {config = DIR}) end,
           "vae: unexpected tensor encoder.mid.attn_1.extra.weight [2]") -- unknown: ldm name kept
  os.remove(path)
  path = edited_copy(function(t)
    t["cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.bias"] = lucid.zeros({3})
  end)
  T.raises(function() lucid.load(path, {config = DIR}) end,
           "text_model.encoder.layers.1.mlp.fc1.bias: shape [3], expected [64]")
  os.remove(path)
end)

T.case("a file of another family says what it is not", function()
  T.raises(function() lucid.load(DIR .. "/vae/diffusion_pytorch_model.safetensors") end,
           "diffusion_pytorch_model.safetensors: not a Stable Diffusion checkpoint: no " ..
           "model.diffusion_model.* tensors (it looks like a VAE-only file)")
  T.raises(function() lucid.load(DIR .. "/unet/diffusion_pytorch_model.safetensors") end,
           "not a Stable Diffusion checkpoint: no model.diffusion_model.* tensors (it looks " ..
           "like a diffusers UNet-only file")
  local path = os.tmpname() .. ".safetensors"
  lucid.safetensors.save(path, {a = lucid.zeros({2, 2}), b = lucid.zeros({3})})
  T.raises(function() lucid.load(path) end, "not a Stable Diffusion checkpoint")
  os.remove(path)
  T.raises(function() lucid.load(DIR .. "/tokenizer") end, "no model_index.json")
  T.raises(function() lucid.load(DIR .. "/nothing-here") end, "no such file or directory")
end)

-- The tiny single file rewritten with SD 2.x's OpenCLIP text-tower layout
-- (q/k/v stacked into in_proj, open_clip names, one more resblock that
-- diffusers drops, projection/logit_scale that the text encoder ignores).
local function openclip_copy(widen)
  local src = lucid.safetensors.load(LDM)
  local out, P, O = {}, "cond_stage_model.transformer.text_model.", "cond_stage_model.model."
  local ren = {layer_norm1 = "ln_1", layer_norm2 = "ln_2", ["mlp.fc1"] = "mlp.c_fc",
               ["mlp.fc2"] = "mlp.c_proj", ["self_attn.out_proj"] = "attn.out_proj"}
  for k, v in pairs(src) do
    if k:sub(1, #P) ~= P then
      out[k] = v
    else
      local r = k:sub(#P + 1)
      local i, mod, wb = r:match("^encoder%.layers%.(%d+)%.(.+)%.(%a+)$")
      if r == "embeddings.token_embedding.weight" then out[O .. "token_embedding.weight"] = v
      elseif r == "embeddings.position_embedding.weight" then out[O .. "positional_embedding"] = v
      elseif r:match("^final_layer_norm") then out[O .. r:gsub("^final_layer_norm", "ln_final")] = v
      elseif ren[mod] then out[O .. "transformer.resblocks." .. i .. "." .. ren[mod] .. "." .. wb] = v
      elseif mod == "self_attn.q_proj" then
        local L = P .. "encoder.layers." .. i .. ".self_attn."
        out[O .. "transformer.resblocks." .. i .. ".attn.in_proj_" .. wb] = lucid.cat(
          {src[L .. "q_proj." .. wb], src[L .. "k_proj." .. wb], src[L .. "v_proj." .. wb]}, 1)
      end
    end
  end
  -- an extra last block (SD 2.x conditions on the penultimate layer)
  for k, v in pairs(out) do
    if k:match("resblocks%.0%.") then out[k:gsub("resblocks%.0%.", "resblocks.2.")] = v:clone() end
  end
  if widen then -- zeros, 64 wide (32 -> 64, 64 -> 128, 3*32 -> 3*64)
    local map = {[32] = 64, [64] = 128, [96] = 192}
    for k, v in pairs(out) do
      if k:sub(1, #O) == O then
        local s = v:shape()
        for i = 1, #s do s[i] = map[s[i]] or s[i] end
        out[k] = lucid.zeros(s)
      end
    end
  end
  out[O .. "text_projection"] = lucid.zeros({32, 32})
  out[O .. "logit_scale"] = lucid.zeros({1})
  local path = os.tmpname() .. ".safetensors"
  lucid.safetensors.save(path, out)
  return path
end

T.case("SD 2.x OpenCLIP text tower layout (single file)", function()
  local path = openclip_copy()
  -- with the folder's config (quick_gelu, 4 heads) the outputs are the golden ones
  local p = lucid.load(path, {config = DIR, unet = false})
  T.eq(p.text_encoder:config().num_hidden_layers, 2)
  local ids = G["text_encoder/1/input_ids"]
  close("openclip layout last_hidden_state", p.text_encoder:forward(ids),
        G["text_encoder/1/last_hidden_state"])
  close("openclip layout clip_skip1", p.text_encoder:forward(ids, {clip_skip = 1}),
        G["text_encoder/1/clip_skip1"])
  os.remove(path)
  -- inferred (from a 64-wide copy): GELU, the last block dropped, SD 2.x
  -- scheduler defaults
  path = openclip_copy(true)
  local q = lucid.load(path, {unet = false})
  T.eq(q.config.text_encoder.hidden_size, 64)
  T.eq(q.config.text_encoder.hidden_act, "gelu")
  T.eq(q.config.text_encoder.num_hidden_layers, 2)
  T.eq(q.scheduler_config.prediction_type, "v_prediction")
  -- OpenCLIP pads with id 0 after the EOS
  local ids2 = q.tokenizer:encode("a photo of a cat"):totable()[1]
  local want = {49406, 320, 1125, 539, 320, 2368, 49407}
  T.eq(#ids2, 77)
  for i = 1, 77 do T.eq(ids2[i], want[i] or 0, "id " .. i) end
  os.remove(path)
end)

T.case("folder with fp16 variant files and legacy VAE attention names", function()
  local dir = os.tmpname()
  os.remove(dir)
  T.truthy(os.execute("mkdir -p '" .. dir .. "/text_encoder' '" .. dir .. "/vae'"))
  local function copy(rel)
    local f = assert(io.open(DIR .. "/" .. rel, "rb")); local s = f:read("*a"); f:close()
    f = assert(io.open(dir .. "/" .. rel, "wb")); f:write(s); f:close()
  end
  copy("model_index.json"); copy("text_encoder/config.json"); copy("vae/config.json")
  local function half(src, dst, rename)
    local out = {}
    for k, v in pairs(lucid.safetensors.load(DIR .. "/" .. src)) do
      out[rename and rename(k) or k] = v:to("f16")
    end
    if rename then
      T.truthy(out["decoder.mid_block.attentions.0.query.weight"] and
               out["encoder.mid_block.attentions.0.proj_attn.bias"], "legacy names written")
    end
    lucid.safetensors.save(dir .. "/" .. dst, out)
  end
  half("text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors")
  local legacy = {to_q = "query", to_k = "key", to_v = "value", ["to_out.0"] = "proj_attn"}
  half("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
       function(k)
         return (k:gsub("attentions%.0%.(to_[qkvout%.0]+)%.", function(p)
           return "attentions.0." .. legacy[p] .. "."
         end))
       end)
  local p = lucid.load(dir, {unet = false})
  T.eq(p.unet, nil)
  -- no tokenizer folder: the bundled vocabulary (same ids)
  T.eq(T.maxdiff(p.tokenizer:encode("a photo of a cat"), G["text_encoder/0/input_ids"]), 0)
  -- f16 weights: about 3 significant digits
  local h = p.text_encoder:forward(G["text_encoder/0/input_ids"])
  local ref = G["text_encoder/0/last_hidden_state"]
  local rel = T.maxdiff(h, ref) / ref:abs():max():item()
  print(string.format("  fp16 text encoder: relative max error %.3g", rel))
  T.truthy(rel < 1e-2, "fp16 text encoder error " .. rel)
  local d = p.vae:decode_raw(G["vae/decode_in"])
  ref = G["vae/decode_out"]
  rel = T.maxdiff(d, ref) / ref:abs():max():item()
  print(string.format("  fp16 legacy-named VAE: relative max error %.3g", rel))
  T.truthy(rel < 1e-2, "fp16 vae error " .. rel)
  os.execute("rm -rf '" .. dir .. "'")
end)

T.case("pipe:free releases the components", function()
  local p = lucid.load(DIR, {unet = false})
  p:free()
  T.raises(function() p.text_encoder:forward(G["text_encoder/0/input_ids"]) end, "freed")
  T.raises(function() p.vae:decode(G["vae/decode_in"]) end, "freed")
end)

T.case("vae: a wrong argument is named", function()
  local p = lucid.load(DIR, {unet = false})
  T.raises(function() p.vae:decode(nil) end, "vae decode: latent must be a tensor, got nil")
  T.raises(function() p.vae:encode("img.png") end, "vae encode: image must be a tensor, got string")
  T.raises(function() p.vae:decode_raw({}) end, "vae decode: latent must be a tensor, got table")
  p:free()
end)

T.case("TAESD round trip on a photo: PSNR > 20 dB", function()
  local im = lucid.image.load(T.data("test_images/astronaut.png")) -- [1,3,512,512]
  local x = im:view({1, 3, 256, 2, 256, 2}):mean(6):mean(4) -- 2x2 box downscale
  local taesd = pipes.diffusers.taesd -- lazily loaded bundled weights
  local z = taesd:encode(x)
  T.eq(z:shape()[2], 4); T.eq(z:shape()[3], 32); T.eq(z:shape()[4], 32)
  local y = taesd:decode(z)
  T.eq(y:shape()[3], 256); T.eq(y:shape()[4], 256)
  T.truthy(y:min():item() >= 0 and y:max():item() <= 1, "decoded image in [0,1]")
  local mse = ((y - x) * (y - x)):mean():item()
  local psnr = -10 * math.log10(mse)
  print(string.format("  TAESD astronaut 256x256 round trip PSNR %.2f dB", psnr))
  T.truthy(psnr > 20, "PSNR " .. psnr)
  local err = T.raises(function() taesd:encode(lucid.zeros({1, 3, 20, 16})) end, "multiples of 8")
  T.truthy(not err:find("pipeline.lua", 1, true), "error points at the caller: " .. err)
  err = T.raises(function() pipes.diffusers.vae:decode(lucid.zeros({1, 3, 8, 8})) end,
                 "vae decode: latent [1,3,8,8], expected [N,4,h,w]")
  T.truthy(err:find("test_models.lua", 1, true), "error points at the caller: " .. err)
end)

T.done()
