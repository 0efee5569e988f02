-- lucid.safetensors, lucid.image and lucid.audio from Lua, including errors.
local T = require "testlib"
local lucid = require "lucid"

local base = os.tmpname() -- a unique file; our files get suffixes
local made = {}
local function tmp(suffix)
  local p = base .. suffix
  made[#made + 1] = p
  return p
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

local function write(p, s)
  local f = assert(io.open(p, "wb")); f:write(s); f:close()
end

local function flat(t)
  local v, n = t:contiguous():view({-1}), t:numel()
  local out = {}
  for i = 1, n do out[i] = v:get(i) end
  return out
end

local function same(a, b, tol)
  local sa, sb = a:shape(), b:shape()
  T.eq(#sa, #sb, "rank")
  for i = 1, #sa do T.eq(sa[i], sb[i], "size of dimension " .. i) end
  local fa, fb = flat(a), flat(b)
  for i = 1, #fa do
    if tol then T.near(fa[i], fb[i], tol, "element " .. i)
    else T.eq(fa[i], fb[i], "element " .. i) end
  end
end

T.case("safetensors save/load round trip with metadata", function()
  local p = tmp(".safetensors")
  local w = lucid.tensor({{1, 2, 3}, {4, 5, 6}})
  local ids = lucid.tensor({7, 8, 9}, "i64")
  local h = lucid.tensor({0.5, -2}, "f16")
  lucid.safetensors.save(p, {weight = w, ids = ids, half = h, wt = w:transpose(1, 2)},
                         {format = "pt", steps = 20, ok = true})
  local ts, meta = lucid.safetensors.load(p)
  same(ts.weight, w); same(ts.ids, ids); same(ts.half, h)
  same(ts.wt, w:transpose(1, 2))
  T.eq(ts.ids:dtype(), "i64"); T.eq(ts.half:dtype(), "f16")
  T.eq(meta.format, "pt"); T.eq(meta.steps, "20"); T.eq(meta.ok, "true")
end)

T.case("safetensors.open is lazy and introspectable", function()
  local f = lucid.safetensors.open(T.data("golden/tiny-a/golden.safetensors"))
  T.eq(#f, 153)
  T.eq(#f:keys(), 153)
  T.truthy(f:has("randn/float64")); T.truthy(not f:has("nope"))
  local info = f:info("mel/default/log_S")
  T.eq(info.dtype, "f64"); T.eq(info.shape[1], 256); T.eq(info.shape[2], 256)
  T.eq(info.nbytes, 256 * 256 * 8)
  T.eq(f:metadata().config, "tiny-a")
  local t = f:get("randn/float64")
  T.eq(t:shape()[1], 20)
  T.raises(function() f:get("nope") end, "no tensor named 'nope'")
  T.raises(function() f:info("nope") end, "no tensor named 'nope'")
  f:close()
  T.eq(t:shape()[1], 20) -- tensors outlive the file
  T.raises(function() f:keys() end, "closed")
end)

T.case("safetensors errors", function()
  local p = tmp("-bad.safetensors")
  write(p, "\7\0\0\0\0\0\0\0[1,2,3]")
  T.raises(function() lucid.safetensors.load(p) end, "expected a JSON object")
  write(p, "short")
  T.raises(function() lucid.safetensors.open(p) end, "too small")
  T.raises(function() lucid.safetensors.load(tmp("-missing.safetensors")) end, "cannot open")
  T.raises(function() lucid.safetensors.save(tmp("-x.safetensors"), {a = 1}) end, "not a tensor")
  T.raises(function() lucid.safetensors.save(tmp("-x.safetensors"), {lucid.zeros({2})}) end,
           "names must be strings")
  T.raises(function()
    lucid.safetensors.save(tmp("-x.safetensors"), {a = lucid.zeros({2})}, {k = {}})
  end, "must be a string")
  T.truthy(not exists(base .. "-x.safetensors"), "no file after failed saves")
end)

T.case("image save/load round trip keeps 8-bit values", function()
  local p = tmp(".png")
  local vals = {}
  for i = 1, 3 * 4 * 5 do vals[i] = ((i * 37) % 256) / 255 end
  local t = lucid.tensor(vals):view({1, 3, 4, 5})
  lucid.image.save(t, p)
  local r = lucid.image.load(p)
  T.eq(r:dtype(), "f32")
  same(r, t, 1e-7)
  local a = lucid.image.load(T.data("test_images/astronaut.png"))
  local s = a:shape()
  T.eq(s[1], 1); T.eq(s[2], 3); T.eq(s[3], 512); T.eq(s[4], 512)
end)

T.case("image text chunks (ASCII and UTF-8)", function()
  local p = tmp("-text.png")
  local text = {parameters = "a cat\nSteps: 20, Seed: 1", lucid = '{"seed":1}',
                title = "café 世界"}
  lucid.image.save(lucid.zeros({3, 2, 2}), p, text)
  local r = lucid.image.read_text(p)
  for k, v in pairs(text) do T.eq(r[k], v, k) end
  local j = tmp("-text.jpg")
  lucid.image.save(lucid.zeros({1, 3, 8, 8}), j, {parameters = "x: y"})
  T.eq(lucid.image.read_text(j).parameters, "x: y")
end)

T.case("image errors", function()
  local p = tmp("-notimg.png")
  write(p, "plain text, not a picture")
  T.raises(function() lucid.image.load(p) end, "not a PNG or JPEG file")
  T.raises(function() lucid.image.load(tmp("-missing.png")) end, "cannot open")
  T.raises(function() lucid.image.save(lucid.zeros({2, 3, 4, 4}), tmp("-b.png")) end,
           "one image of the batch")
  T.raises(function() lucid.image.save(lucid.zeros({3, 4, 4}), tmp("-b.gif")) end,
           "unsupported image extension")
  T.raises(function() lucid.image.save(lucid.zeros({3, 4, 4}), tmp("-b.png"), {[1] = "x"}) end,
           "keys must be strings")
  T.raises(function() lucid.image.save("not a tensor", tmp("-b.png")) end, "tensor")
  T.truthy(not exists(base .. "-b.png") and not exists(base .. "-b.gif"))
end)

T.case("audio load, info, resample", function()
  local p = T.data("test_audio/jfk_16k_mono_s16.wav")
  local t, rate = lucid.audio.load(p)
  T.eq(rate, 16000); T.eq(t:shape()[1], 1); T.eq(t:shape()[2], 176000)
  local info = lucid.audio.info(p)
  T.eq(info.sample_rate, 16000); T.eq(info.channels, 1); T.eq(info.frames, 176000)
  T.near(info.duration, 11.0, 1e-9); T.eq(info.format, "WAV")
  local s, r2 = lucid.audio.load(T.data("test_audio/jfk_44k1_stereo_s16.wav"), 22050, true)
  T.eq(r2, 22050); T.eq(s:shape()[1], 1); T.eq(s:shape()[2], 242550)
  local st = lucid.audio.load(T.data("test_audio/jfk_44k1_stereo_s16.wav"), nil, {mono = false})
  T.eq(st:shape()[1], 2)
  local up = lucid.audio.resample(t, 16000, 48000)
  T.eq(up:shape()[2], 528000)
end)

T.case("audio save round trip with metadata", function()
  local n, vals = 64, {}
  for i = 1, 2 * n do vals[i] = ((i * 97) % 2001 - 1000) / 32768 end
  local t = lucid.tensor(vals):view({2, n})
  for _, ext in ipairs{".wav", ".flac"} do
    local p = tmp("-a" .. ext)
    lucid.audio.save(t, p, 8000, {title = "tone", comment = "seed 3"})
    local r, rate = lucid.audio.load(p)
    T.eq(rate, 8000)
    same(r, t)
    local info = lucid.audio.info(p)
    T.eq(info.metadata.title, "tone"); T.eq(info.metadata.comment, "seed 3")
  end
  local p = tmp("-f.wav")
  lucid.audio.save(lucid.tensor({0.1, 0.2, 0.3}), p, 100, nil, {encoding = "float"})
  T.eq(lucid.audio.info(p).subtype, "32 bit float")
  same(lucid.audio.load(p), lucid.tensor({{0.1, 0.2, 0.3}}))
end)

T.case("audio errors", function()
  local p = tmp("-bad.wav")
  write(p, "")
  T.raises(function() lucid.audio.load(p) end, "cannot read audio")
  T.raises(function() lucid.audio.load(T.data("test_audio/jfk.flac"), 0) end, "sample rate")
  T.raises(function() lucid.audio.load(T.data("test_audio/jfk.flac"), 1e9) end, "sample rate")
  T.raises(function() lucid.audio.save(lucid.zeros({2, 10}), tmp("-o.mp3"), 8000) end,
           "unsupported audio extension")
  T.raises(function() lucid.audio.save(lucid.zeros({2, 10}), tmp("-o.wav"), 8000, {mood = "x"}) end,
           "unknown audio metadata key 'mood'")
  T.raises(function()
    lucid.audio.save(lucid.zeros({2, 10}), tmp("-o.wav"), 8000, nil, {encoding = "mp3"})
  end, "unknown encoding")
  T.truthy(not exists(base .. "-o.wav") and not exists(base .. "-o.mp3"))
end)

T.case("json: one value, nothing after it", function()
  T.eq(lucid.json.decode(' {"a": [1, 2]} \n').a[2], 2)
  T.raises(function() lucid.json.decode('{"a": 1}x') end, "unexpected text after the JSON value")
  T.raises(function() lucid.json.decode('{}{}') end, "parse error at byte 2")
  T.raises(function() lucid.json.decode('{"a": ') end, "parse error")
end)

for _, p in ipairs(made) do os.remove(p) end
os.remove(base)
T.done()
