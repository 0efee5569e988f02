-- ControlNet against diffusers (golden tiny-a): the residuals and the UNet
-- output with them (controlnet/t601) from the diffusers folder, from the
-- same weights written with the original control_model.* names, from the
-- diffusers-named file alone and from an fp16 variant; the ControlNet
-- txt2img run (DDIM, CFG); guess mode, start/end, composition of two
-- ControlNets, preprocessors and loading errors.
local T = require "testlib"
local lucid = require "lucid"
local controlnet = require "lucid.controlnet"
local guidance = require "lucid.guidance"
local sampling = require "lucid.sampling"

local dir = T.data("golden/tiny-a")
local cdir = dir .. "/controlnet"
local golden = lucid.json.decode(io.open(dir .. "/golden.json"):read("*a"))
local G = lucid.safetensors.load(dir .. "/golden.safetensors")
local case, run, base_config
for _, c in ipairs(golden.cases) do
  if c.name == "controlnet/t601" then case = c end
  if c.name == "controlnet_txt2img/DDIMScheduler" then run = c end
  if c.name == "schedulers" then base_config = c.base_config end
end
assert(case and run and base_config, "golden cases missing")

local function rel_err(got, want)
  return T.maxdiff(got, want) / want:abs():max():item()
end

local x = G[case.inputs.sample]
local t = G[case.inputs.timestep]
local ctx = G[case.inputs.encoder_hidden_states]
local cond = G[case.inputs.controlnet_cond]
local scale = case.conditioning_scale

-- residuals and UNet output of a loaded ControlNet against the golden case
local pipe = lucid.load(dir)
local function check_golden(cn, tol, label)
  local down, mid = cn:forward(x, t, ctx, cond, scale)
  T.eq(#down, case.num_down_res, "number of down residuals")
  local worst = 0
  for k, name in ipairs(case.outputs.down_res) do
    worst = math.max(worst, rel_err(down[k], G[name]))
  end
  worst = math.max(worst, rel_err(mid, G[case.outputs.mid_res]))
  local out = pipe.unet:forward(x, t, ctx, {down_residuals = down, mid_residual = mid})
  local e = rel_err(out, G[case.outputs.unet_out])
  print(string.format("# %s: residuals rel err %.3g, unet output %.3g", label, worst, e))
  T.truthy(worst <= tol, string.format("%s: residual rel err %.3g > %g", label, worst, tol))
  T.truthy(e <= tol, string.format("%s: unet output rel err %.3g > %g", label, e, tol))
  return down, mid
end

local cn = lucid.controlnet(cdir)
local ref_down, ref_mid

T.case("t601 from the diffusers folder", function()
  T.eq(cn.num_skips, 6)
  T.eq(cn.config.conditioning_factor, 8)
  T.eq(cn.config.num_attention_heads[1], 4)
  ref_down, ref_mid = check_golden(cn, 1e-4, "folder")
end)

T.case("a repeated context reuses k/v; a context changed in place does not", function()
  -- the cross-attention k/v cache: the same bits as a ControlNet that has
  -- never run, whatever happened to the context in between
  local c = ctx:clone()
  local d1, m1 = cn:forward(x, t, c, cond, scale)
  local d2, m2 = cn:forward(x, t, c, cond, scale)
  T.eq(T.maxdiff(m1, m2), 0)
  for k = 1, #d1 do T.eq(T.maxdiff(d1[k], d2[k]), 0) end
  c:mul_(0.5)
  local d3, m3 = cn:forward(x, t, c, cond, scale)
  local fd, fm = lucid.controlnet(cdir):forward(x, t, c, cond, scale)
  T.eq(T.maxdiff(m3, fm), 0)
  for k = 1, #d3 do T.eq(T.maxdiff(d3[k], fd[k]), 0) end
  T.truthy(T.maxdiff(m3, m1) > 0, "a halved context changes the residuals")
end)

T.case("the diffusers-named file alone takes the config.json beside it", function()
  local c2 = lucid.controlnet(cdir .. "/diffusion_pytorch_model.safetensors")
  local down, mid = c2:forward(x, t, ctx, cond, scale)
  for k = 1, #down do T.eq(T.maxdiff(down[k], ref_down[k]), 0, "down residual " .. k) end
  T.eq(T.maxdiff(mid, ref_mid), 0, "mid residual")
end)

-- diffusers -> original ControlNet names, written here from the layout of
-- the original cldm model (independently of lucid's key map):
-- input_blocks.{1 + 3b + l} hold down block b's layer l, .{3 + 3b}.0.op its
-- downsampler; the hint block alternates conv / SiLU (even indices).
local resnet_parts = {norm1 = "in_layers.0", conv1 = "in_layers.2", norm2 = "out_layers.0",
                      conv2 = "out_layers.3", time_emb_proj = "emb_layers.1",
                      conv_shortcut = "skip_connection"}
local function original_name(n, nhint)
  local r
  r = n:match("^controlnet_cond_embedding%.conv_in%.(.*)")
  if r then return "input_hint_block.0." .. r end
  local k
  k, r = n:match("^controlnet_cond_embedding%.blocks%.(%d+)%.(.*)")
  if k then return "input_hint_block." .. (2 * (tonumber(k) + 1)) .. "." .. r end
  r = n:match("^controlnet_cond_embedding%.conv_out%.(.*)")
  if r then return "input_hint_block." .. (2 * (nhint + 1)) .. "." .. r end
  k, r = n:match("^controlnet_down_blocks%.(%d+)%.(.*)")
  if k then return "zero_convs." .. k .. ".0." .. r end
  r = n:match("^controlnet_mid_block%.(.*)")
  if r then return "middle_block_out.0." .. r end
  r = n:match("^conv_in%.(.*)")
  if r then return "input_blocks.0.0." .. r end
  r = n:match("^time_embedding%.linear_1%.(.*)")
  if r then return "time_embed.0." .. r end
  r = n:match("^time_embedding%.linear_2%.(.*)")
  if r then return "time_embed.2." .. r end
  local b, l, part, rest = n:match("^down_blocks%.(%d+)%.resnets%.(%d+)%.([%w_]+)%.(.*)")
  if b then
    return string.format("input_blocks.%d.0.%s.%s", 1 + 3 * b + l, resnet_parts[part], rest)
  end
  b, l, rest = n:match("^down_blocks%.(%d+)%.attentions%.(%d+)%.(.*)")
  if b then return string.format("input_blocks.%d.1.%s", 1 + 3 * b + l, rest) end
  b, rest = n:match("^down_blocks%.(%d+)%.downsamplers%.0%.conv%.(.*)")
  if b then return string.format("input_blocks.%d.0.op.%s", 3 + 3 * b, rest) end
  l, part, rest = n:match("^mid_block%.resnets%.(%d+)%.([%w_]+)%.(.*)")
  if l then return string.format("middle_block.%d.%s.%s", l == "0" and 0 or 2, resnet_parts[part], rest) end
  rest = n:match("^mid_block%.attentions%.0%.(.*)")
  if rest then return "middle_block.1." .. rest end
  error("no original name for " .. n)
end

local W = lucid.safetensors.load(cdir .. "/diffusion_pytorch_model.safetensors")
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "'")

T.case("t601 from a single file with original control_model.* names", function()
  local nhint = 0
  for n in pairs(W) do
    local k = n:match("^controlnet_cond_embedding%.blocks%.(%d+)%.weight")
    if k then nhint = math.max(nhint, tonumber(k) + 1) end
  end
  local out = {}
  for n, v in pairs(W) do out["control_model." .. original_name(n, nhint)] = v end
  local path = tmp .. "/control_tiny.safetensors"
  lucid.safetensors.save(path, out)
  local c2 = lucid.controlnet(path, {config = cdir})
  local down, mid = c2:forward(x, t, ctx, cond, scale)
  for k = 1, #down do T.eq(T.maxdiff(down[k], ref_down[k]), 0, "down residual " .. k) end
  T.eq(T.maxdiff(mid, ref_mid), 0, "mid residual")
  -- without a config the shapes give everything but the head count (8
  -- assumed, 4 in this model): it loads, and the attention differs
  local c3 = lucid.controlnet(path)
  T.eq(c3.config.num_attention_heads[1], 8)
  T.eq(c3.config.conditioning_embedding_out_channels[4], 32)
end)

T.case("t601 from an fp16 variant folder", function()
  local d = tmp .. "/cn16"
  os.execute("mkdir -p '" .. d .. "'")
  local h = {}
  for n, v in pairs(W) do h[n] = v:to("f16") end
  lucid.safetensors.save(d .. "/diffusion_pytorch_model.fp16.safetensors", h)
  local f = io.open(d .. "/config.json", "wb")
  f:write(io.open(cdir .. "/config.json"):read("*a"))
  f:close()
  check_golden(lucid.controlnet(d), 2e-2, "fp16 weights")
end)

T.case("bgr channel order and global pooling from the config", function()
  local js = io.open(cdir .. "/config.json"):read("*a")
  local function variant(name, key, value)
    local path = tmp .. "/" .. name .. ".json"
    local f = io.open(path, "wb")
    f:write((js:gsub('"' .. key .. '": [^,\n]+', '"' .. key .. '": ' .. value)))
    f:close()
    return lucid.controlnet(cdir .. "/diffusion_pytorch_model.safetensors", {config = path})
  end
  local bgr = variant("bgr", "controlnet_conditioning_channel_order", '"bgr"')
  T.eq(bgr.config.controlnet_conditioning_channel_order, "bgr")
  local d, m = bgr:forward(x, t, ctx, cond:flip(2), scale)
  for k = 1, #d do T.truthy(T.maxdiff(d[k], ref_down[k]) <= 1e-6, "bgr down " .. k) end
  T.truthy(T.maxdiff(m, ref_mid) <= 1e-6, "bgr mid")
  local pool = variant("pool", "global_pool_conditions", "true")
  local pd, pm = pool:forward(x, t, ctx, cond, scale)
  for k = 1, #pd do
    local s = ref_down[k]:shape()
    local mean = ref_down[k]:mean(4, true):mean(3, true):expand(s[1], s[2], s[3], s[4])
    T.truthy(T.maxdiff(pd[k], mean) <= 1e-6, "pooled down " .. k)
  end
  T.eq(table.concat(pm:shape(), ","), table.concat(ref_mid:shape(), ","))
end)

T.case("guess mode scales the residuals by logspace(-1, 0, 7) x scale", function()
  local down, mid = cn:forward(x, t, ctx, cond, scale, {guess_mode = true})
  local n = #down
  for k = 1, n do
    local s = 10 ^ (-1 + (k - 1) / n)
    T.truthy(rel_err(down[k], ref_down[k] * s) <= 1e-6, "down residual " .. k)
  end
  T.truthy(rel_err(mid, ref_mid) <= 1e-6, "mid residual (scale 1 in guess mode)")
end)

T.case("two ControlNets compose as the sum of their residuals", function()
  local c2 = lucid.controlnet(cdir .. "/diffusion_pytorch_model.safetensors")
  local cond2 = cond:flip(4)
  local d1, m1 = cn:forward(x, t, ctx, cond, 0.8)
  local d2, m2 = c2:forward(x, t, ctx, cond2, 0.5)
  local ds, ms = controlnet.residuals({cn, c2}, x, t, ctx, {cond, cond2}, {0.8, 0.5})
  for k = 1, #ds do T.truthy(T.maxdiff(ds[k], d1[k] + d2[k]) <= 1e-6, "down " .. k) end
  T.truthy(T.maxdiff(ms, m1 + m2) <= 1e-6, "mid")
  T.truthy(T.maxdiff(ds[1], d1[1]) > 1e-3, "the second ControlNet contributes")
end)

T.case("start/end fractions as diffusers' controlnet_keep", function()
  local keep = {}
  for i = 1, 10 do keep[i] = controlnet.keep(i, 10, 0.2, 0.8) end
  T.eq(table.concat(keep, ","), "0,0,1,1,1,1,1,1,0,0")
  local s = lucid.scheduler("ddim", base_config)
  s:set_timesteps(10)
  local f = controlnet.unet_opts{nets = cn, images = cond:narrow(1, 1, 1), scales = 0.8,
                                 start = 0.2, stop = 0.8, scheduler = s}
  T.eq(f(1, 901, {"uncond", "cond"}, x, ctx), nil)
  local o = f(3, 701, {"uncond", "cond"}, x, ctx)
  T.eq(#o.down_residuals, 6)
end)

T.case("controlnet txt2img (DDIM, CFG 7.5) as diffusers", function()
  local img = G[run.inputs.control_image_u8]:to("f32"):permute(3, 1, 2):contiguous()
  img = controlnet.prepare_image(img:view(1, 3, 64, 64) / 255, 64, 64)
  local s = lucid.scheduler("ddim", base_config)
  s:set_timesteps(run.steps)
  local per_step = G[run.outputs.latents_per_step]
  local worst = 0
  local final = sampling.run{
    unet = pipe.unet, scheduler = s, timesteps_set = true,
    latents = G[run.inputs.init_latents] * s.init_noise_sigma,
    contexts = {uncond = G[run.inputs.negative_prompt_embeds], cond = G[run.inputs.prompt_embeds]},
    guidance = guidance.cfg(run.guidance_scale),
    unet_opts = controlnet.unet_opts{nets = {cn}, images = {img},
                                     scales = {run.conditioning_scale}, scheduler = s},
    on_step = function(i, n, tt, xi)
      worst = math.max(worst, rel_err(xi, per_step:narrow(1, i, 1)))
    end,
  }
  local e = rel_err(final, G[run.outputs.final_latents])
  print(string.format("# controlnet txt2img: final rel err %.3g (worst step %.3g)", e, worst))
  T.truthy(e <= 1e-4, string.format("final latents rel err %.3g", e))
end)

T.case("guess mode in the loop: the unconditional branch gets zero residuals", function()
  local s = lucid.scheduler("ddim", base_config)
  s:set_timesteps(10)
  local one = cond:narrow(1, 1, 1)
  local f = controlnet.unet_opts{nets = cn, images = one, scales = 0.8, guess_mode = true,
                                 scheduler = s}
  local o = f(1, 901, {"uncond", "cond"}, x, ctx)
  local d, m = cn:forward(x:narrow(1, 2, 1), 901, ctx:narrow(1, 2, 1), one, 0.8, true)
  T.eq(o.down_residuals[1]:narrow(1, 1, 1):abs():max():item(), 0, "uncond half")
  T.eq(T.maxdiff(o.down_residuals[1]:narrow(1, 2, 1), d[1]), 0, "cond half")
  T.eq(T.maxdiff(o.mid_residual:narrow(1, 2, 1), m), 0, "mid cond half")
end)

T.case("lucid.load(path, {controlnet = ...}) sets pipe.controlnet", function()
  local p = lucid.load(dir, {controlnet = cdir})
  local down = p.controlnet:forward(x, t, ctx, cond, scale)
  T.eq(T.maxdiff(down[1], ref_down[1]), 0)
  T.eq(#p.controlnets, 1)
end)

T.case("wrong files and inputs get clear errors", function()
  T.raises(function() lucid.controlnet(dir .. "/unet/diffusion_pytorch_model.safetensors") end,
           "not a ControlNet: " .. dir .. "/unet/diffusion_pytorch_model.safetensors has no")
  T.raises(function() lucid.controlnet(dir .. "/unet") end,
           "_class_name is UNet2DConditionModel, expected ControlNetModel")
  T.raises(function() lucid.controlnet(dir) end, "(a Stable Diffusion pipeline folder, not a ControlNet)")
  T.raises(function() lucid.controlnet(dir .. "/model_ldm.safetensors") end, "not a ControlNet")
  T.raises(function() lucid.controlnet(dir .. "/nope") end, "no such file")
  T.raises(function() cn:forward(x, t, ctx, cond:narrow(3, 1, 32), 1) end,
           "control image [2,3,32,64], expected [2,3,64,64]")
  T.raises(function() controlnet.preprocess(cond, "sobel") end, "unknown preprocessor")
end)

T.case("preprocessors and control-image resizing", function()
  local one = cond:narrow(1, 1, 1)
  local e = controlnet.preprocess(one, "canny", {low = 100, high = 200})
  T.eq(table.concat(e:shape(), ","), "1,3,64,64")
  local ones = (e:eq(1)):sum():item() + (e:eq(0)):sum():item()
  T.eq(ones, 3 * 64 * 64, "binary edges")
  local inv = controlnet.preprocess(one, "invert")
  T.truthy(T.maxdiff(inv, 1 - one) == 0, "invert")
  -- same size: unchanged; a constant image stays constant through Lanczos
  T.eq(controlnet.prepare_image(one, 64, 64), one)
  local c = lucid.full({1, 3, 40, 24}, 100 / 255)
  local r = controlnet.prepare_image(c, 16, 32)
  T.eq(table.concat(r:shape(), ","), "1,3,32,16")
  T.truthy(T.maxdiff(r, lucid.full({1, 3, 32, 16}, 100 / 255)) < 1e-7, "constant preserved")
end)

T.case("recipe controlnet: scale 0 reproduces txt2img; a real scale changes the result", function()
  local bin = os.getenv("LUCID_BIN") or "lucid"
  local img = T.data("test_images/camera.png")
  local common = string.format(" --model '%s' --prompt 'a cat' --steps 3 --sampler ddim --seed 7"
    .. " --width 64 --height 64 --quiet", dir)
  local function run_cli(args, name)
    local out = tmp .. "/" .. name
    local cmd = string.format("'%s' %s%s --out '%s.png' --latents-out '%s.st' 2>&1", bin, args,
                              common, out, out)
    local f = io.popen(cmd)
    local msg = f:read("*a")
    f:close()
    local ok, t = pcall(lucid.safetensors.load, out .. ".st")
    if not ok then error(cmd .. ": " .. msg) end
    return t.latents
  end
  local ref = run_cli("txt2img", "t2i")
  local cn_args = string.format("controlnet --controlnet '%s' --control-image '%s' --preprocess canny",
                                cdir, img)
  local zero = run_cli(cn_args .. " --control-scale 0", "cn0")
  T.eq(T.maxdiff(zero, ref), 0, "scale 0")
  local one = run_cli(cn_args .. " --control-scale 1", "cn1")
  T.truthy(T.maxdiff(one, ref) > 1e-3, "scale 1 changes the latents")
  local late = run_cli(cn_args .. " --control-start 0.99", "cnlate")
  T.eq(T.maxdiff(late, ref), 0, "a ControlNet that never starts")
end)

os.execute("rm -rf '" .. tmp .. "'")
T.done()
