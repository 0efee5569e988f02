#!/bin/sh
# The full-size SD 1.5 architecture from a seed (tools/make_checkpoint.lua):
# a single ldm .safetensors and a diffusers folder with the same values.
# The single file loads with no config (heads and layout inferred as the
# released SD 1.5 configs say); both layouts give bit-identical text
# encoder, UNet and VAE outputs and the same txt2img image. Then an SD 2.1
# single file (OpenCLIP text tower, linear projections, head dim 64).
# Writes ~4.5 GB to TMPDIR; removes it.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
: "${LUCID_SRCDIR:?LUCID_SRCDIR must name the source tree}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-sd15.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tool="$LUCID_SRCDIR/tools/make_checkpoint.lua"

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
# run NAME CMD...: must exit 0; output in $tmp/out
run() {
    name=$1
    shift
    if "$@" >"$tmp/out" 2>&1 </dev/null; then ok "$name"; else
        not_ok "$name: exit $?" "$(tail -n 20 "$tmp/out")"; fi
}

# ---- SD 1.5, both layouts from one run ----
run "make_checkpoint sd15 (single + diffusers, f16)" \
    "$LUCID_BIN" run "$tool" --arch sd15 --layout both --dtype f16 --seed 1 --out "$tmp/sd15" --quiet
single="$tmp/sd15/model.safetensors"
folder="$tmp/sd15/diffusers"

# the key set of the released SD 1.5 files: exactly these prefixes, 1130
# tensors (686 UNet, 248 VAE, 196 text encoder), f16, ldm VAE attention as
# 1x1 convs
cat >"$tmp/keys.lua" <<'LUA'
local lucid = require "lucid"
local f = lucid.safetensors.open((...))
local n, pre = 0, {}
for _, k in ipairs(f:keys()) do
  n = n + 1
  local p = k:match("^model%.diffusion_model%.") or k:match("^first_stage_model%.")
            or k:match("^cond_stage_model%.transformer%.text_model%.")
  if not p then error("unexpected key " .. k) end
  pre[p] = (pre[p] or 0) + 1
  local dt = f:info(k)
  dt = type(dt) == "table" and dt.dtype or dt
  if dt ~= "f16" then error(k .. " is " .. tostring(dt) .. ", expected f16") end
end
local function shape(k)
  local i = f:info(k)
  local s = i.shape or select(2, f:info(k))
  return table.concat(s, ",")
end
assert(n == 1130, "1130 tensors expected, found " .. n)
assert(pre["model.diffusion_model."] == 686, "UNet tensors: " .. tostring(pre["model.diffusion_model."]))
assert(pre["first_stage_model."] == 248, "VAE tensors: " .. tostring(pre["first_stage_model."]))
assert(pre["cond_stage_model.transformer.text_model."] == 196, "text encoder tensors")
local want = {
  ["first_stage_model.decoder.mid.attn_1.q.weight"] = "512,512,1,1",
  ["first_stage_model.encoder.mid.attn_1.proj_out.weight"] = "512,512,1,1",
  ["first_stage_model.decoder.up.3.block.0.conv1.weight"] = "512,512,3,3",
  ["first_stage_model.decoder.up.0.block.0.conv1.weight"] = "128,256,3,3",
  ["first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"] = "128,256,1,1",
  ["model.diffusion_model.input_blocks.1.1.proj_in.weight"] = "320,320,1,1",
  ["model.diffusion_model.input_blocks.3.0.op.weight"] = "320,320,3,3",
  ["model.diffusion_model.output_blocks.2.1.conv.weight"] = "1280,1280,3,3",
  ["model.diffusion_model.output_blocks.5.2.conv.weight"] = "1280,1280,3,3",
  ["model.diffusion_model.output_blocks.3.0.skip_connection.weight"] = "1280,2560,1,1",
  ["model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"] = "1280,768",
  ["model.diffusion_model.input_blocks.7.1.transformer_blocks.0.ff.net.0.proj.weight"] = "10240,1280",
  ["model.diffusion_model.time_embed.2.weight"] = "1280,1280",
  ["model.diffusion_model.out.2.weight"] = "4,320,3,3",
  ["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = "49408,768",
  ["cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc1.weight"] = "3072,768",
}
for k, s in pairs(want) do
  assert(f:has(k), "missing " .. k)
  assert(shape(k) == s, k .. ": shape " .. shape(k) .. ", expected " .. s)
end
print("keys ok")
LUA
run "single file: the released SD 1.5 key set and shapes" "$LUCID_BIN" run "$tmp/keys.lua" "$single"

cat >"$tmp/compare.lua" <<'LUA'
local lucid = require "lucid"
local single, folder = ...
local failed = 0
local function check(c, what)
  if c then print("ok - " .. what) else failed = failed + 1; print("not ok - " .. what) end
end
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function list(t) return table.concat(t, ",") end

-- the released SD 1.5 configs (runwayml/stable-diffusion-v1-5)
local function check_config(pipe, label)
  local u, te, v, s = pipe.unet.config, pipe.text_encoder:config(), pipe.vae.config, pipe.scheduler_config
  check(list(u.block_out_channels) == "320,640,1280,1280" and u.cross_attention_dim == 768 and
        u.in_channels == 4 and u.out_channels == 4 and u.norm_num_groups == 32 and
        u.sample_size == 64 and u.flip_sin_to_cos == true and u.freq_shift == 0 and
        u.use_linear_projection == false and u.upcast_attention == false and
        list(u.down_block_types) == "CrossAttnDownBlock2D,CrossAttnDownBlock2D,CrossAttnDownBlock2D,DownBlock2D" and
        list(u.up_block_types) == "UpBlock2D,CrossAttnUpBlock2D,CrossAttnUpBlock2D,CrossAttnUpBlock2D",
        label .. ": UNet config is SD 1.5's")
  -- SD 1.5's attention_head_dim 8 is diffusers' legacy name for 8 heads
  local lpb = type(u.layers_per_block) == "table" and list(u.layers_per_block) or tostring(u.layers_per_block)
  check(list(u.num_attention_heads) == "8,8,8,8" and (lpb == "2" or lpb == "2,2,2,2"),
        label .. ": UNet 8 heads per block, 2 layers per block")
  check(te.hidden_size == 768 and te.num_attention_heads == 12 and te.num_hidden_layers == 12 and
        te.intermediate_size == 3072 and te.hidden_act == "quick_gelu" and
        te.max_position_embeddings == 77 and te.vocab_size == 49408,
        label .. ": text encoder config is SD 1.5's (12 heads)")
  check(list(v.block_out_channels) == "128,256,512,512" and v.latent_channels == 4 and
        v.layers_per_block == 2 and v.norm_num_groups == 32 and v.scaling_factor == 0.18215,
        label .. ": VAE config is SD 1.5's")
  check(s._class_name == "PNDMScheduler" and s.beta_start == 0.00085 and s.beta_end == 0.012 and
        s.beta_schedule == "scaled_linear" and s.steps_offset == 1 and s.skip_prk_steps == true and
        s.num_train_timesteps == 1000 and s.set_alpha_to_one == false,
        label .. ": scheduler config is SD 1.5's")
end

local function outputs(path)
  local pipe = lucid.load(path)
  local r = {unet_cfg = pipe.unet.config, te_cfg = pipe.text_encoder:config(), vae_cfg = pipe.vae.config}
  r.pipe_label = path:match("[^/]+$")
  check_config(pipe, r.pipe_label)
  local ids = pipe.tokenizer:encode("a photograph of an astronaut riding a horse")
  r.ids = ids
  r.hidden = pipe.text_encoder:forward(ids)
  local x = lucid.randn({1, 4, 8, 8}, 1234)
  r.eps = pipe.unet:forward(x, 801, r.hidden)
  r.image = pipe.vae:decode(x)
  r.latent = pipe.vae:encode(r.image * 2 - 1)
  pipe:free()
  return r
end

local a = outputs(single)
local b = outputs(folder)
check(same(a.unet_cfg, b.unet_cfg) and same(a.te_cfg, b.te_cfg) and same(a.vae_cfg, b.vae_cfg),
      "the inferred configs equal the folder's")
local function diff(x, y) return (x - y):abs():max():item() end
check(diff(a.ids, b.ids) == 0, "same token ids")
for _, k in ipairs{"hidden", "eps", "image", "latent"} do
  local d = diff(a[k], b[k])
  local sd = a[k]:std():item()
  check(d == 0 and sd > 1e-3 and sd == sd, string.format("%s identical in both layouts (max diff %g, std %g)", k, d, sd))
end
check(list(a.hidden:shape()) == "1,77,768" and list(a.eps:shape()) == "1,4,8,8" and
      list(a.image:shape()) == "1,3,64,64", "output shapes")
os.exit(failed == 0 and 0 or 1)
LUA
"$LUCID_BIN" run "$tmp/compare.lua" "$single" "$folder" >"$tmp/cmp" 2>&1
st=$?
cat "$tmp/cmp"
pass=$((pass + $(grep -c '^ok' "$tmp/cmp")))
fail=$((fail + $(grep -c '^not ok' "$tmp/cmp")))
[ "$st" -eq 0 ] || [ "$(grep -c '^not ok' "$tmp/cmp")" -gt 0 ] || not_ok "compare.lua exited $st"

# the CLI end to end: one step at 64x64 from each layout. The PNGs record
# the model's path and hash, so their pixels are compared, not their bytes.
run "txt2img from the single file" "$LUCID_BIN" txt2img "a red cube" --model "$single" \
    --width 64 --height 64 --steps 1 --seed 42 --out "$tmp/a.png" --quiet
run "txt2img from the diffusers folder" "$LUCID_BIN" txt2img "a red cube" --model "$folder" \
    --width 64 --height 64 --steps 1 --seed 42 --out "$tmp/b.png" --quiet
cat >"$tmp/pixels.lua" <<'LUA'
local lucid = require "lucid"
local a, b = lucid.image.load((...)), lucid.image.load((select(2, ...)))
local d = (a - b):abs():max():item()
local sd = a:std():item()
print(string.format("max pixel difference %g, pixel std %g", d, sd))
os.exit(d == 0 and sd > 0.01 and 0 or 1)
LUA
run "txt2img: identical pixels from both layouts (and not a flat image)" \
    "$LUCID_BIN" run "$tmp/pixels.lua" "$tmp/a.png" "$tmp/b.png"
rm -rf "$tmp/sd15"

# ---- SD 2.1 (768-v): OpenCLIP text tower, linear projections ----
run "make_checkpoint sd21 (single file)" \
    "$LUCID_BIN" run "$tool" --arch sd21 --layout single --seed 2 --out "$tmp/sd21.safetensors" --quiet
cat >"$tmp/sd21.lua" <<'LUA'
local lucid = require "lucid"
local path = ...
local f = lucid.safetensors.open(path)
local n, open = 0, 0
for _, k in ipairs(f:keys()) do
  n = n + 1
  if k:match("^cond_stage_model%.model%.") then open = open + 1
  elseif not (k:match("^model%.diffusion_model%.") or k:match("^first_stage_model%.")) then
    error("unexpected key " .. k)
  end
end
-- 686 UNet + 248 VAE + 294 OpenCLIP (24 resblocks of 12, embeddings,
-- ln_final, text_projection, logit_scale)
assert(n == 1228 and open == 294, ("1228 tensors (294 OpenCLIP) expected, found %d (%d)"):format(n, open))
assert(f:has("cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight"))
assert(f:has("model.diffusion_model.input_blocks.1.1.proj_in.weight"))
f:close()
local pipe = lucid.load(path) -- no config: all of it inferred
local u, te, s = pipe.unet.config, pipe.text_encoder:config(), pipe.scheduler_config
local function list(t) return table.concat(t, ",") end
assert(u.cross_attention_dim == 1024 and u.use_linear_projection == true,
       "UNet: 1024 context, linear projections")
-- SD 2.x: head dim 64, so 5, 10, 20, 20 heads
assert(list(u.num_attention_heads) == "5,10,20,20", "UNet heads " .. list(u.num_attention_heads))
assert(te.hidden_size == 1024 and te.num_attention_heads == 16 and te.intermediate_size == 4096 and
       te.hidden_act == "gelu" and te.num_hidden_layers == 23,
       "text encoder: OpenCLIP ViT-H text tower without its last layer")
assert(s.prediction_type == "v_prediction", "v-prediction")
local ids = pipe.tokenizer:encode("a red cube"):totable()[1]
assert(ids[1] == 49406 and ids[5] == 49407 and ids[6] == 0 and ids[77] == 0,
       "OpenCLIP padding: BOS a red cube EOS then zeros")
local h = pipe.text_encoder:forward(pipe.tokenizer:encode("a red cube"))
assert(list(h:shape()) == "1,77,1024", "hidden shape")
local x = lucid.randn({1, 4, 8, 8}, 5)
local eps = pipe.unet:forward(x, 500, h)
local sd = eps:std():item()
assert(list(eps:shape()) == "1,4,8,8" and sd == sd and sd > 1e-3, "UNet output: finite, not flat")
print("sd21 ok")
LUA
run "sd21 single file: key set, inferred config (head dim 64, OpenCLIP, v-prediction), forward" \
    "$LUCID_BIN" run "$tmp/sd21.lua" "$tmp/sd21.safetensors"
rm -f "$tmp/sd21.safetensors"

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
