-- The Lua surface of the core ops: operators, functions, methods, 1-based
-- dims and indices, error messages.
local T = require "testlib"
local lucid = require "lucid"

local function same(t, want, msg)
  local got = t:totable()
  local function cmp(g, w, path)
    if type(w) == "table" then
      T.eq(type(g), "table", (msg or "value") .. path)
      T.eq(#g, #w, (msg or "value") .. path .. " length")
      for i = 1, #w do cmp(g[i], w[i], path .. "[" .. i .. "]") end
    else
      T.near(g, w, 1e-6, (msg or "value") .. path)
    end
  end
  cmp(got, want, "")
end

local A = lucid.tensor{{1, 2, 3}, {4, 5, 6}}

T.case("operators with tensors and numbers", function()
  same(A + A, {{2, 4, 6}, {8, 10, 12}})
  same(A - 1, {{0, 1, 2}, {3, 4, 5}})
  same(10 - A, {{9, 8, 7}, {6, 5, 4}})
  same(A * 2, {{2, 4, 6}, {8, 10, 12}})
  same(2 * A, {{2, 4, 6}, {8, 10, 12}})
  same(A / 2, {{0.5, 1, 1.5}, {2, 2.5, 3}})
  same(6 / A, {{6, 3, 2}, {1.5, 1.2, 1}})
  same(-A, {{-1, -2, -3}, {-4, -5, -6}})
  same(A ^ 2, {{1, 4, 9}, {16, 25, 36}})
  same(2 ^ lucid.tensor{0, 1, 3}, {1, 2, 8})
  -- broadcasting: [2,3] with [3] and with [2,1]
  same(A + lucid.tensor{10, 20, 30}, {{11, 22, 33}, {14, 25, 36}})
  same(A * lucid.tensor{{1}, {-1}}, {{1, 2, 3}, {-4, -5, -6}})
end)

T.case("broadcast [2,1,3] + [4,1] -> [2,4,3]", function()
  local a = lucid.tensor{{{0, 1, 2}}, {{10, 11, 12}}}
  local b = lucid.tensor{{0}, {100}, {200}, {300}}
  local c = a + b
  local s = c:shape()
  T.eq(#s, 3); T.eq(s[1], 2); T.eq(s[2], 4); T.eq(s[3], 3)
  T.eq(c:get(2, 4, 3), 312)
  T.eq(c:get(1, 3, 2), 201)
end)

T.case("functions and dtypes", function()
  same(lucid.add(A, 1), {{2, 3, 4}, {5, 6, 7}})
  same(lucid.add(A, A, 0.5), {{1.5, 3, 4.5}, {6, 7.5, 9}})
  same(lucid.sub(1, A), {{0, -1, -2}, {-3, -4, -5}})
  same(lucid.maximum(A, 3.5), {{3.5, 3.5, 3.5}, {4, 5, 6}})
  same(lucid.minimum(A, lucid.tensor{2, 2, 2}), {{1, 2, 2}, {2, 2, 2}})
  local lt = lucid.lt(A, 3)
  T.eq(lt:dtype(), "u8")
  same(lt, {{1, 1, 0}, {0, 0, 0}})
  same(lucid.ge(A, lucid.tensor{1, 5, 7}), {{1, 0, 0}, {1, 1, 0}})
  same(lucid.ne(A, 2), {{1, 0, 1}, {1, 1, 1}})
  same(lucid.eq(A, 2), {{0, 1, 0}, {0, 0, 0}})
  T.eq((A:to("f16") + A:to("f16")):dtype(), "f16")
  T.eq((A:to("f16") + A:to("bf16")):dtype(), "f32")
  T.eq((A:to("f16") * 0.5):dtype(), "f16")
  T.eq((A:to("f64") + A):dtype(), "f64")
  local i = lucid.tensor({1, 2, 3}, "i32")
  T.eq((i + 1):dtype(), "i32")
  T.eq((i / 2):dtype(), "f32")
  same(i / 2, {0.5, 1, 1.5})
  -- a 0-d tensor does not widen its partner: x / x:std() keeps x's dtype
  T.eq((A / A:std()):dtype(), "f32")
end)

T.case("unary ops, functions and methods", function()
  local x = lucid.tensor{-1.5, 0, 0.5, 2.5}
  same(x:abs(), {1.5, 0, 0.5, 2.5})
  same(lucid.relu(x), {0, 0, 0.5, 2.5})
  same(x:round(), {-2, 0, 0, 2}) -- half to even
  same(x:floor(), {-2, 0, 0, 2})
  same(x:ceil(), {-1, 0, 1, 3})
  same(x:sign(), {-1, 0, 1, 1})
  same(x:square(), {2.25, 0, 0.25, 6.25})
  same(lucid.sigmoid(lucid.tensor{0}), {0.5})
  T.near(lucid.tensor{1}:exp():item(), math.exp(1), 1e-6)
  T.near(lucid.tensor{4}:sqrt():item(), 2, 0)
  T.near(lucid.tensor{4}:rsqrt():item(), 0.5, 0)
  T.near(lucid.tensor{4}:reciprocal():item(), 0.25, 0)
  T.near(lucid.tensor{1}:log():item(), 0, 0)
  T.near(lucid.tensor{1}:silu():item(), 1 / (1 + math.exp(-1)), 1e-6)
  T.near(lucid.tensor{1}:gelu():item(), 0.8413447460685429, 1e-6)
  local k = math.sqrt(2 / math.pi)
  local tanh_gelu = 0.5 * (1 + math.tanh(k * (1 + 0.044715)))
  T.near(lucid.tensor{1}:gelu("tanh"):item(), tanh_gelu, 1e-6)
  T.near(lucid.gelu(lucid.tensor{1}, {approximate = "tanh"}):item(), tanh_gelu, 1e-6)
  T.near(lucid.gelu_tanh(lucid.tensor{1}):item(), tanh_gelu, 1e-6)
  T.near(lucid.quick_gelu(lucid.tensor{1}):item(), 1 / (1 + math.exp(-1.702)), 1e-6)
  T.near(lucid.tanh(lucid.tensor{0.5}):item(), math.tanh(0.5), 1e-6)
  T.near(lucid.sin(lucid.tensor{0.5}):item(), math.sin(0.5), 1e-6)
  T.near(lucid.cos(lucid.tensor{0.5}):item(), math.cos(0.5), 1e-6)
  same(lucid.neg(x), {1.5, 0, -0.5, -2.5})
  T.raises(function() x:gelu("fast") end, "gelu: unknown approximation 'fast'")
end)

T.case("in-place ops return the tensor itself", function()
  local t = A:clone()
  local r = t:add_(A, 2)
  T.eq(r:storage_id(), t:storage_id())
  same(t, {{3, 6, 9}, {12, 15, 18}})
  t:sub_(A)
  same(t, {{2, 4, 6}, {8, 10, 12}})
  t:mul_(0.5):div_(lucid.tensor{1, 2, 3})
  same(t, {{1, 1, 1}, {4, 2.5, 2}})
  t:add_(1):sub_(1, 2)
  same(t, {{0, 0, 0}, {3, 1.5, 1}})
  t:exp_()
  T.near(t:get(2, 1), math.exp(3), 1e-4)
  local c = A:clone():clamp_(2, 5)
  same(c, {{2, 2, 3}, {4, 5, 5}})
  same(A:clone():clamp_(nil, 3), {{1, 2, 3}, {3, 3, 3}})
  same(A:clamp(2), {{2, 2, 3}, {4, 5, 6}})
  same(lucid.clamp(A, 2, 4), {{2, 2, 3}, {4, 4, 4}})
  T.raises(function() A:clone():add_(lucid.zeros{4}) end, "add_: shape [4] cannot broadcast to [2,3]")
  T.raises(function() A:clone():mul_(2, 3) end, "alpha only applies to add_ and sub_")
end)

T.case("where and lerp", function()
  local m = lucid.gt(A, 3)
  same(lucid.where(m, A, 0), {{0, 0, 0}, {4, 5, 6}})
  same(lucid.where(m, -1, A), {{1, 2, 3}, {-1, -1, -1}})
  same(lucid.lerp(A, A * 3, 0.5), {{2, 4, 6}, {8, 10, 12}})
  same(A:lerp(0, 1), {{0, 0, 0}, {0, 0, 0}})
end)

T.case("reductions: all elements give 0-d tensors", function()
  local s = A:sum()
  T.eq(#s:shape(), 0)
  T.eq(s:item(), 21)
  T.eq(A:mean():item(), 3.5)
  T.eq(A:max():item(), 6)
  T.eq(A:min():item(), 1)
  T.near(A:var():item(), 3.5, 1e-12)            -- unbiased: 17.5 / 5
  T.near(A:var(nil, nil, false):item(), 17.5 / 6, 1e-12)
  T.near(A:std():item(), math.sqrt(3.5), 1e-12)
  T.near(lucid.tensor{3, 4}:norm():item(), 5, 0)
  T.eq(A:argmax():item(), 6)  -- 1-based flat index
  T.eq(A:argmin():item(), 1)
  T.eq(lucid.sum(A):item(), 21)
  T.eq(lucid.tensor{5, 9, 9, 1}:argmax():item(), 2) -- first of the ties
end)

T.case("reductions over a 1-based dim", function()
  same(A:sum(1), {5, 7, 9})
  same(A:sum(2), {6, 15})
  same(A:sum(-1), {6, 15})
  local k = A:mean(2, true)
  T.eq(#k:shape(), 2); T.eq(k:shape()[2], 1)
  same(k, {{2}, {5}})
  local v, i = A:max(1)
  same(v, {4, 5, 6})
  same(i, {2, 2, 2})
  T.eq(i:dtype(), "i64")
  local mv, mi = lucid.min(A, 2)
  same(mv, {1, 4}); same(mi, {1, 1})
  same(A:argmax(2), {3, 3})
  same(lucid.argmin(A, 1, true), {{1, 1, 1}})
  same(A:var(1), {4.5, 4.5, 4.5})
  same(A:std(2, false, false), {math.sqrt(2 / 3), math.sqrt(2 / 3)})
  same(lucid.tensor{{3, 4}, {6, 8}}:norm(2), {5, 10})
  -- max with a tensor is the elementwise maximum
  same(lucid.max(A, lucid.tensor{3, 3, 3}), {{3, 3, 3}, {4, 5, 6}})
  -- transposed (strided) input
  same(A:transpose(1, 2):sum(1), {6, 15})
  T.raises(function() A:sum(3) end, "dimension 3 out of range for a 2-d tensor")
  T.raises(function() lucid.zeros{0}:max() end, "max: cannot reduce the empty tensor [0]")
end)

T.case("reductions over a list of dims", function()
  local x = lucid.tensor{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}} -- [2,2,2]
  same(x:sum({1, 3}), {1 + 2 + 5 + 6, 3 + 4 + 7 + 8})
  same(x:mean({2, 3}), {2.5, 6.5})
  local k = x:sum({1, 2}, true)
  T.eq(#k:shape(), 3); T.eq(k:shape()[1], 1); T.eq(k:shape()[3], 2)
  same(k, {{{16, 20}}})
  -- var over two dims is one pass over their 4 elements, not nested
  T.near(x:var({1, 3}):get(1), 17 / 3, 1e-6) -- {1,2,5,6}: mean 3.5, ss 17
  T.near(x:std({1, 2, 3}, false, false):item(), math.sqrt(5.25), 1e-6)
  same(x:norm({2, 3}), {math.sqrt(30), math.sqrt(174)})
  same(x:transpose(1, 3):sum({1, 2}), {10, 26}) -- keeps x's first dim
  T.raises(function() x:sum({1, 1}) end, "dimension 1 listed twice")
  T.raises(function() x:argmax({1, 2}) end, "argmax/argmin take one dimension")
end)

T.case("matmul and linear", function()
  local B = lucid.tensor{{7, 8}, {9, 10}, {11, 12}}
  same(A:matmul(B), {{58, 64}, {139, 154}})
  same(lucid.matmul(A, lucid.tensor{1, 1, 1}), {6, 15})
  T.eq(lucid.matmul(lucid.tensor{1, 2, 3}, lucid.tensor{1, 2, 3}):item(), 14)
  same(A:matmul(A:transpose(1, 2)), {{14, 32}, {32, 77}})
  local batched = lucid.stack({A, A * 2}, 1):matmul(B) -- [2,2,3] @ [3,2]
  same(batched, {{{58, 64}, {139, 154}}, {{116, 128}, {278, 308}}})
  T.raises(function() A:matmul(lucid.zeros{4, 5}) end,
    "matmul: [2,3] @ [4,5]: inner sizes 3 and 4 differ")
  -- linear: x @ w^T + b
  local w = lucid.tensor{{1, 0, 0}, {0, 1, 1}}
  same(lucid.linear(A, w), {{1, 5}, {4, 11}})
  same(lucid.linear(A, w, lucid.tensor{10, 20}), {{11, 25}, {14, 31}})
  same(A:linear(w, lucid.tensor{10, 20}), {{11, 25}, {14, 31}})
  T.raises(function() lucid.linear(A, lucid.zeros{2, 4}) end,
    "linear: input [2,3] has 3 features but weight [2,4] expects 4")
end)

T.case("cat, stack, split, repeat_, flip", function()
  same(lucid.cat({A, A}, 1), {{1, 2, 3}, {4, 5, 6}, {1, 2, 3}, {4, 5, 6}})
  same(lucid.cat({A, lucid.tensor{{0}, {0}}}, 2), {{1, 2, 3, 0}, {4, 5, 6, 0}})
  same(lucid.cat({A, A}), {{1, 2, 3}, {4, 5, 6}, {1, 2, 3}, {4, 5, 6}})
  T.raises(function() lucid.cat({A, lucid.zeros{2, 2}}, 1) end,
    "cat: tensor 2 has shape [2,2], which does not match [2,3]")
  T.raises(function() lucid.cat({A, 3}, 1) end, "cat: list entry 2 is a number, not a tensor")
  local s = lucid.stack({A, A}, 3)
  T.eq(s:shape()[3], 2)
  T.eq(s:get(2, 3, 2), 6)
  T.eq(lucid.stack({A, A}, -1):shape()[3], 2)
  T.eq(lucid.stack({A, A}):shape()[1], 2)
  T.raises(function() lucid.stack({A, A}, 4) end, "stack: dimension 4 out of range 1..3")
  local parts = lucid.split(A, 2, 2)
  T.eq(#parts, 2)
  same(parts[1], {{1, 2}, {4, 5}})
  same(parts[2], {{3}, {6}})
  T.eq(#A:split(1), 2)
  same(lucid.repeat_(lucid.tensor{1, 2}, 2, 2), {{1, 2, 1, 2}, {1, 2, 1, 2}})
  same(A:repeat_({1, 2}), {{1, 2, 3, 1, 2, 3}, {4, 5, 6, 4, 5, 6}})
  same(A:flip(2), {{3, 2, 1}, {6, 5, 4}})
  same(lucid.flip(A, 1, 2), {{6, 5, 4}, {3, 2, 1}})
end)

T.case("arange and linspace", function()
  local r = lucid.arange(5)
  T.eq(r:dtype(), "i64")
  same(r, {0, 1, 2, 3, 4})
  same(lucid.arange(2, 5), {2, 3, 4})
  same(lucid.arange(1, 0, -0.25), {1, 0.75, 0.5, 0.25})
  T.eq(lucid.arange(1, 0, -0.25):dtype(), "f32")
  T.eq(lucid.arange(0, 3, 1, "f64"):dtype(), "f64")
  T.eq(lucid.arange(4, "f32"):dtype(), "f32")
  same(lucid.linspace(0, 1, 5), {0, 0.25, 0.5, 0.75, 1})
  T.eq(lucid.linspace(0, 1, 3, "f64"):dtype(), "f64")
  T.raises(function() lucid.arange(0, 1, 0) end, "arange:")
  T.raises(function() lucid.linspace(0, 1, -1) end, "non-negative integer")
end)

T.case("bad arguments raise clear errors", function()
  T.raises(function() return A + "x" end, "expected a tensor, number or table, got string")
  T.raises(function() return A + lucid.zeros{4} end, "add: shapes [2,3] and [4] cannot broadcast")
  T.raises(function() return lucid.where(lucid.zeros{5}, A, 0) end,
    "where: shapes [5], [2,3] and [] cannot broadcast")
  T.raises(function() return lucid.matmul(A) end, "expected a tensor")
end)

T.done()
