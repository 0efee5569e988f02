local T = require "testlib"
local lucid = require "lucid"

-- ---- helpers ----

local function numel(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

-- tensor of the given shape with element f(flat 0-based index)
local function make(shape, f)
  local flat = {}
  for i = 1, numel(shape) do flat[i] = f(i - 1) end
  return lucid.tensor(flat):view(shape)
end

-- deterministic values in [-1, 1)
local seed = 12345
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 1073741824 - 1
end
local function rand(shape) return make(shape, rnd) end

local function flat(t) return t:contiguous():view({t:numel()}):totable() end

local function same_shape(t, shape)
  local s = t:shape()
  T.eq(#s, #shape, "rank")
  for i = 1, #shape do T.eq(s[i], shape[i], "size of dimension " .. i) end
end

local function close(got, want, tol, what)
  local g = type(got) == "table" and got or flat(got)
  local w = type(want) == "table" and want or flat(want)
  T.eq(#g, #w, (what or "") .. " element count")
  for i = 1, #w do T.near(g[i], w[i], tol or 1e-5, (what or "value") .. " [" .. i .. "]") end
end

-- ---- conv2d ----

-- naive direct convolution on flat tables, accumulated in doubles
local function naive_conv(x, w, b, st, pd, dl, groups)
  local N, Cin, H, W = unpack(x:shape())
  local Cout, Cg, kh, kw = unpack(w:shape())
  local OH = math.floor((H + 2 * pd[1] - dl[1] * (kh - 1) - 1) / st[1]) + 1
  local OW = math.floor((W + 2 * pd[2] - dl[2] * (kw - 1) - 1) / st[2]) + 1
  local xf, wf, bf = flat(x), flat(w), b and flat(b)
  local out, Og = {}, Cout / groups
  for n = 0, N - 1 do for o = 0, Cout - 1 do for oy = 0, OH - 1 do for ox = 0, OW - 1 do
    local acc = bf and bf[o + 1] or 0
    local g = math.floor(o / Og)
    for c = 0, Cg - 1 do for i = 0, kh - 1 do for j = 0, kw - 1 do
      local iy, ix = oy * st[1] - pd[1] + i * dl[1], ox * st[2] - pd[2] + j * dl[2]
      if iy >= 0 and iy < H and ix >= 0 and ix < W then
        acc = acc + xf[((n * Cin + g * Cg + c) * H + iy) * W + ix + 1] *
                    wf[((o * Cg + c) * kh + i) * kw + j + 1]
      end
    end end end
    out[#out + 1] = acc
  end end end end
  return out, {N, Cout, OH, OW}
end

T.case("conv2d: hand-computed 2x2 diagonal kernel", function()
  local x = make({1, 1, 3, 3}, function(i) return i + 1 end)
  local w = lucid.tensor{{{{1, 0}, {0, 1}}}}
  local y = lucid.conv2d(x, w, lucid.tensor{0.5})
  same_shape(y, {1, 1, 2, 2})
  close(y, {6.5, 8.5, 12.5, 14.5}, 0)
  close(lucid.conv2d(x, w, nil, {stride = 2, padding = 1}), {1, 3, 7, 14}, 0)
  close(x:conv2d(w, nil, {stride = {2, 2}, padding = {1, 1}}), {1, 3, 7, 14}, 0, "method")
end)

T.case("conv2d: matches a naive convolution for every parameter", function()
  local cases = {
    {{2, 3, 7, 9}, {4, 3, 3, 3}, true, {1, 1}, {1, 1}, {1, 1}, 1},
    {{1, 4, 11, 10}, {6, 2, 3, 3}, false, {2, 2}, {1, 1}, {1, 1}, 2},
    {{1, 4, 9, 8}, {4, 1, 3, 3}, true, {1, 1}, {2, 2}, {2, 2}, 4},
    {{2, 6, 5, 7}, {8, 6, 1, 1}, true, {1, 1}, {0, 0}, {1, 1}, 1},
    {{1, 3, 8, 9}, {2, 3, 2, 5}, true, {2, 1}, {1, 2}, {1, 2}, 1},
  }
  for k, c in ipairs(cases) do
    local x, w = rand(c[1]), rand(c[2])
    local b = c[3] and rand({c[2][1]}) or nil
    local y = lucid.conv2d(x, w, b, {stride = c[4], padding = c[5], dilation = c[6], groups = c[7]})
    local want, shape = naive_conv(x, w, b, c[4], c[5], c[6], c[7])
    same_shape(y, shape)
    close(y, want, 1e-5, "case " .. k)
  end
end)

T.case("conv2d: errors name the op and the shapes", function()
  local x, w = lucid.zeros({1, 3, 8, 8}), lucid.zeros({16, 4, 3, 3})
  T.raises(function() lucid.conv2d(x, w) end,
           "conv2d: input [1,3,8,8] has 3 channels but weight [16,4,3,3] expects 4 (groups 1)")
  T.raises(function() lucid.conv2d(x, lucid.zeros({4, 3, 3, 3}), nil, {stride = 0}) end,
           "stride")
  T.raises(function() lucid.conv2d(x, lucid.zeros({4, 3, 3, 3}), nil, {padding = "1"}) end,
           "padding")
end)

-- ---- normalisation ----

T.case("group_norm: hand values, affine and eps", function()
  -- groups {1,2,3,4} (mean 2.5, var 1.25) and {2,2,2,6} (mean 3, var 3)
  local x = lucid.tensor{{{{1, 2}}, {{3, 4}}, {{2, 2}}, {{2, 6}}}}
  local s0, s1 = math.sqrt(1.25), math.sqrt(3)
  local y = lucid.group_norm(x, 2, lucid.tensor{1, 2, 1, 1}, lucid.tensor{0, 0, 1, -1}, 0)
  close(y, {-1.5 / s0, -0.5 / s0, 1 / s0, 3 / s0, 1 - 1 / s1, 1 - 1 / s1, -1 - 1 / s1, 3 / s1 - 1}, 1e-6)
  local d = x:group_norm(2):get(1, 1, 1, 1)
  T.near(d, -1.5 / math.sqrt(1.25 + 1e-5), 1e-6, "default eps 1e-5")
  T.raises(function() lucid.group_norm(x, 3) end, "not divisible into 3 groups")
end)

T.case("layer_norm: last dimension, mean 0 variance 1", function()
  local r = 1 / math.sqrt(2 / 3 + 1e-5)
  close(lucid.layer_norm(lucid.tensor{{1, 2, 3}}, lucid.tensor{1, 2, 3}, lucid.tensor{0.5, 0, -1}),
        {-r + 0.5, 0, 3 * r - 1}, 1e-5)
  local y = flat(rand({4, 29}):layer_norm(nil, nil, 0))
  for row = 0, 3 do
    local s, ss = 0, 0
    for i = 1, 29 do s = s + y[row * 29 + i] end
    for i = 1, 29 do ss = ss + (y[row * 29 + i] - s / 29) ^ 2 end
    T.near(s / 29, 0, 1e-5, "mean"); T.near(ss / 29, 1, 1e-4, "variance")
  end
end)

-- ---- softmax ----

T.case("softmax: hand values, dims, sums", function()
  local z = math.exp(1) + math.exp(2) + math.exp(3)
  close(lucid.softmax(lucid.tensor{1, 2, 3}), {math.exp(1) / z, math.exp(2) / z, math.exp(3) / z}, 1e-7)
  close(lucid.tensor{1, 2, 3}:log_softmax(1), {1 - math.log(z), 2 - math.log(z), 3 - math.log(z)}, 1e-6)
  local x = rand({3, 4, 5})
  for _, dim in ipairs({1, 2, -1}) do
    local y = x:softmax(dim)
    local sizes = {3, 4, 5}
    local d = dim < 0 and 3 or dim
    local f = flat(y)
    -- sum over dimension d for every other index
    local sums = {}
    for a = 0, 2 do for b = 0, 3 do for c = 0, 4 do
      local idx = {a, b, c}
      idx[d] = 0
      local key = idx[1] * 100 + idx[2] * 10 + idx[3]
      sums[key] = (sums[key] or 0) + f[(a * 4 + b) * 5 + c + 1]
    end end end
    local n = 0
    for _, s in pairs(sums) do T.near(s, 1, 1e-6, "sum along " .. dim); n = n + 1 end
    T.eq(n, 60 / sizes[d])
  end
  T.raises(function() x:softmax(4) end, "out of range")
end)

-- ---- attention ----

local function naive_sdpa(q, k, v, mask, is_bool, scale, causal)
  local B, H, Lq, D = unpack(q:shape())
  local Lk, Dv = k:shape()[3], v:shape()[4]
  scale = scale or 1 / math.sqrt(D)
  local qf, kf, vf, mf = flat(q), flat(k), flat(v), mask and flat(mask)
  local out = {}
  for b = 0, B - 1 do for h = 0, H - 1 do for i = 0, Lq - 1 do
    local s, mx = {}, -math.huge
    for j = 0, Lk - 1 do
      local d = 0
      for c = 0, D - 1 do
        d = d + qf[((b * H + h) * Lq + i) * D + c + 1] * kf[((b * H + h) * Lk + j) * D + c + 1]
      end
      d = d * scale
      if mf then -- mask shape [B,1,Lq,Lk]
        local m = mf[(b * Lq + i) * Lk + j + 1]
        if is_bool then d = m ~= 0 and d or -math.huge else d = d + m end
      end
      if causal and j > i then d = -math.huge end
      s[j] = d
      if d > mx then mx = d end
    end
    local sum = 0
    for j = 0, Lk - 1 do s[j] = mx == -math.huge and 0 or math.exp(s[j] - mx); sum = sum + s[j] end
    for c = 0, Dv - 1 do
      local acc = 0
      for j = 0, Lk - 1 do acc = acc + s[j] * vf[((b * H + h) * Lk + j) * Dv + c + 1] end
      out[#out + 1] = sum > 0 and acc / sum or 0
    end
  end end end
  return out
end

T.case("sdpa: matches naive attention (masks, causal, scale, long sequence)", function()
  local q, k, v = rand({2, 2, 5, 8}), rand({2, 2, 7, 8}), rand({2, 2, 7, 6})
  close(lucid.sdpa(q, k, v), naive_sdpa(q, k, v), 1e-5, "plain")
  local fm = rand({2, 1, 5, 7})
  close(lucid.sdpa(q, k, v, {mask = fm, scale = 0.7}), naive_sdpa(q, k, v, fm, false, 0.7), 1e-5,
        "float mask")
  local bm = make({2, 1, 5, 7}, function(i) return (i % 3 == 1 or i < 7) and 0 or 1 end)
  local got = lucid.sdpa(q, k, v, {mask = bm:to("u8")})
  close(got, naive_sdpa(q, k, v, bm, true), 1e-5, "bool mask")
  T.eq(got:get(1, 1, 1, 1), 0, "fully masked row is zero")
  local ql, kl, vl = rand({1, 1, 150, 8}), rand({1, 1, 150, 8}), rand({1, 1, 150, 4})
  close(lucid.sdpa(ql, kl, vl, {causal = true}), naive_sdpa(ql, kl, vl, nil, false, nil, true), 1e-5,
        "causal, 150 queries")
  T.raises(function() lucid.sdpa(q, rand({2, 2, 7, 4}), v) end, "head sizes 8 and 4 differ")
end)

T.case("attention: heads packed in the channel dimension", function()
  local B, Lq, Lk, H, D = 2, 6, 9, 3, 4
  local q, k, v = rand({B, Lq, H * D}), rand({B, Lk, H * D}), rand({B, Lk, H * D})
  local function heads(t, L) return t:view({B, L, H, D}):permute(1, 3, 2, 4):contiguous() end
  local want = lucid.sdpa(heads(q, Lq), heads(k, Lk), heads(v, Lk)):permute(1, 3, 2, 4)
  local got = lucid.attention(q, k, v, H)
  same_shape(got, {B, Lq, H * D})
  close(got, want, 1e-6)
  T.raises(function() lucid.attention(q, k, v, 5) end, "5 heads")
end)

-- ---- resizing ----

T.case("interpolate / resize: torch's nearest and bilinear", function()
  local row = lucid.tensor{{{{10, 20, 30}}}}
  close(lucid.interpolate(row, {size = {1, 5}}), {10, 10, 20, 20, 30}, 0, "nearest")
  close(row:interpolate({size = {1, 5}, mode = "nearest-exact"}), {10, 10, 20, 30, 30}, 0, "exact")
  close(lucid.interpolate(row, {scale_factor = 2}), {10, 10, 20, 20, 30, 30, 10, 10, 20, 20, 30, 30}, 0,
        "scale_factor 2")
  local two = lucid.tensor{{{{1, 3}}}}
  close(lucid.interpolate(two, {size = {1, 4}, mode = "bilinear"}), {1, 1.5, 2.5, 3}, 1e-6, "bilinear")
  close(lucid.interpolate(two, {size = {1, 4}, mode = "bilinear", align_corners = true}),
        {1, 5 / 3, 7 / 3, 3}, 1e-6, "align_corners")
  close(lucid.resize(lucid.tensor{{{{1, 2, 4, 8}}}}, 1, 2), {1.5, 6}, 1e-6, "resize down")
  local sq = lucid.tensor{{{{1, 2}, {3, 4}}}}
  local up = sq:resize(3, 3, "bilinear", true)
  same_shape(up, {1, 1, 3, 3})
  close(up, {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}, 1e-6, "2-d")
  T.raises(function() lucid.interpolate(row, {size = {2, 2}, align_corners = true}) end,
           "align_corners only applies")
  T.raises(function() lucid.interpolate(row, {size = {2, 2}, scale_factor = 2}) end, "exactly one")
  T.raises(function() lucid.interpolate(row, {size = {2, 2}, mode = "bicubic"}) end, "unknown mode")
end)

T.case("grid_sample: identity, shift, padding modes, known values", function()
  local N, C, H, W = 1, 2, 3, 4
  local x = rand({N, C, H, W})
  for _, ac in ipairs({true, false}) do
    local function grid(shift)
      return make({N, H, W, 2}, function(idx)
        local comp, p = idx % 2, math.floor(idx / 2)
        local i, j = math.floor(p / W) % H, p % W
        if comp == 0 then
          local g = ac and -1 + 2 * j / (W - 1) or (2 * j + 1) / W - 1
          return g + shift * (ac and 2 / (W - 1) or 2 / W)
        end
        return ac and -1 + 2 * i / (H - 1) or (2 * i + 1) / H - 1
      end)
    end
    close(lucid.grid_sample(x, grid(0), {align_corners = ac}), x, 1e-5, "identity")
    local xs = flat(x)
    local zeros, border = {}, {}
    for p = 0, N * C * H - 1 do for j = 0, W - 1 do
      zeros[#zeros + 1] = j < W - 1 and xs[p * W + j + 2] or 0
      border[#border + 1] = xs[p * W + math.min(j + 1, W - 1) + 1]
    end end
    close(x:grid_sample(grid(1), {align_corners = ac}), zeros, 1e-5, "shift, zeros")
    close(x:grid_sample(grid(1), {align_corners = ac, padding_mode = "border"}), border, 1e-5,
          "shift, border")
  end
  -- align_corners=false on {10,20,40}: x=1.5 -> pixel 3.25 (outside),
  -- reflected about 2.5 to 1.75; x=-0.5 -> pixel 0.25
  local v = lucid.tensor{{{{10, 20, 40}}}}
  local g = lucid.tensor{{{{1.5, 0}, {-0.5, 0}}}}
  close(lucid.grid_sample(v, g), {0, 12.5}, 1e-5, "zeros")
  close(lucid.grid_sample(v, g, {padding_mode = "border"}), {40, 12.5}, 1e-5, "border")
  close(lucid.grid_sample(v, g, {padding_mode = "reflection"}), {35, 12.5}, 1e-5, "reflection")
  close(lucid.grid_sample(v, lucid.tensor{{{{0.2, 0}, {-0.5, 0}}}}, {mode = "nearest", align_corners = true}),
        {20, 10}, 0, "nearest rounds half to even")
  T.raises(function() lucid.grid_sample(v, g, {padding_mode = "wrap"}) end, "unknown padding_mode")
end)

T.case("pad: constant, reflect, replicate", function()
  local x = lucid.tensor{{1, 2, 3}, {4, 5, 6}}
  local y = lucid.pad(x, {1, 0, 0, 1}, "constant", 9)
  same_shape(y, {3, 4})
  close(y, {9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9}, 0, "constant")
  close(x:pad({2, 1, 1, 0}, "reflect"), {6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5}, 0,
        "reflect")
  close(x:pad({1, 1}, "replicate"), {1, 1, 2, 3, 3, 4, 4, 5, 6, 6}, 0, "replicate, last dim only")
  T.raises(function() x:pad({3, 0, 0, 0}, "reflect") end, "must be smaller")
  T.raises(function() x:pad({1, 2, 3}) end, "pads must be")
end)

T.done()
