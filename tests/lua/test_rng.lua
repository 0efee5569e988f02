local T = require "testlib"
local lucid = require "lucid"
local ffi = require "ffi"

-- golden tensors read straight from the safetensors file (the header is
-- JSON; entries are found by name with a pattern, data read through ffi)
local golden = {}
do
  local f = assert(io.open(T.data("golden/tiny-a/golden.safetensors"), "rb"))
  local blob = f:read("*a")
  f:close()
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + blob:byte(i) end
  local header = blob:sub(9, 8 + n)
  local base = 8 + n
  function golden.get(name)
    local esc = name:gsub("%p", "%%%0")
    local entry = header:match('"' .. esc .. '"%s*:%s*(%b{})')
    assert(entry, "golden tensor " .. name .. " missing")
    local dtype = entry:match('"dtype"%s*:%s*"(%w+)"')
    local b, e = entry:match('"data_offsets"%s*:%s*%[%s*(%d+)%s*,%s*(%d+)%s*%]')
    local ctype = ({F32 = "float", F64 = "double"})[dtype]
    local size = ffi.sizeof(ctype)
    local count = (tonumber(e) - tonumber(b)) / size
    local buf = ffi.new(ctype .. "[?]", count)
    ffi.copy(buf, blob:sub(base + tonumber(b) + 1, base + tonumber(e)), count * size)
    local vals = {}
    for i = 0, count - 1 do vals[i + 1] = buf[i] end
    return vals
  end
end

-- exact equality of every element (f64 holds f32 values exactly)
local function same(t, want, first, label)
  first = first or 1
  local n = t:numel()
  local flat = t:view({n})
  for i = 1, n do
    local got = flat:get(i)
    if got ~= want[first + i - 1] then
      error(string.format("%s: element %d is %.17g, torch gives %.17g", label, i, got,
                          want[first + i - 1]), 2)
    end
  end
end

-- two tensors with the same shape and identical values
local function identical(a, b)
  local n = a:numel()
  T.eq(b:numel(), n, "numel")
  local fa, fb = a:view({n}), b:view({n})
  for i = 1, n do T.eq(fa:get(i), fb:get(i), "element " .. i) end
end

T.case("lucid.randn with a number seed matches torch (vectorised path)", function()
  same(lucid.randn({1, 4, 8, 8}, 42), golden.get("randn/4"), 1, "randn/4")
  same(lucid.randn({3, 5, 7}, 1), golden.get("randn/5"), 1, "randn/5")
end)

T.case("scalar path below 16 elements", function()
  same(lucid.randn({1}, 0), golden.get("randn/0"), 1, "randn/0")
  same(lucid.randn({15}, 0), golden.get("randn/1"), 1, "randn/1")
  same(lucid.randn({17}, 0), golden.get("randn/3"), 1, "randn/3")
end)

T.case("a 64-bit seed as a decimal string (torch keeps its low 32 bits)", function()
  local g = lucid.generator("4294967301")
  same(g:randn(100), golden.get("randn/7"), 1, "randn/7")
  T.eq(g:seed(), 4294967301)
  same(lucid.randn({100}, 4294967301), golden.get("randn/7"), 1, "randn/7 (number)")
end)

T.case("a generator carries its state across calls", function()
  local g = lucid.generator(7)
  local want = golden.get("randn/sequence")
  for d = 0, 2 do same(g:randn{1, 4, 8, 8}, want, d * 256 + 1, "draw " .. (d + 1)) end
end)

T.case("float64 and rand", function()
  local t = lucid.generator(3):randn({20}, "f64")
  T.eq(t:dtype(), "f64")
  same(t, golden.get("randn/float64"), 1, "randn/float64")
  local u = lucid.rand({20}, 5)
  T.eq(u:dtype(), "f32")
  same(u, golden.get("rand/0"), 1, "rand/0")
end)

T.case("f16 and bf16 follow torch's own arithmetic", function()
  -- torch.randn(5, generator=manual_seed(0), dtype=float16)[0] is 0x3e2a
  local h = lucid.randn({5}, 0, "f16")
  T.eq(h:dtype(), "f16"); T.eq(h:get(1), 1 + 554 / 1024)
  -- and bfloat16's is 0x3fc5
  local b = lucid.generator(0):randn({5}, "bf16")
  T.eq(b:dtype(), "bf16"); T.eq(b:get(1), 1 + 69 / 128)
end)

T.case("get_state / set_state / clone replay the stream", function()
  local g = lucid.generator(11)
  g:randn(3) -- leaves torch's cached second normal pending
  local st = g:get_state()
  local c = g:clone()
  local a1, b1 = g:randn(1), g:randn(2, 20)
  g:manual_seed(5)
  g:set_state(st)
  local a2, b2 = g:randn(1), g:randn(2, 20)
  local a3, b3 = c:randn(1), c:randn(2, 20)
  identical(a1, a2); identical(b1, b2)
  identical(a1, a3); identical(b1, b3)
  T.eq(g:seed(), 11)
  T.raises(function() g:set_state(lucid.zeros({10}, "u8")) end, "u8 tensor of shape")
end)

T.case("manual_seed restarts the stream; default generator is deterministic", function()
  local g = lucid.generator(42)
  g:randn(5)
  g:manual_seed(42)
  same(g:randn{1, 4, 8, 8}, golden.get("randn/4"), 1, "after manual_seed")
  lucid.manual_seed(0)
  same(lucid.randn({16}), golden.get("randn/2"), 1, "default generator")
end)

T.case("bad arguments are reported", function()
  T.raises(function() lucid.randn({2}, 1.5) end, "not an integer")
  T.raises(function() lucid.randn({2}, "12x") end, "not a decimal integer")
  T.raises(function() lucid.randn({2}, "99999999999999999999999") end, "64 bits")
  T.raises(function() lucid.randn({2}, 1, "i32") end, "i32")
  T.raises(function() lucid.generator(1, "philox"):randn({2}, "f64") end, "f32 noise only")
  T.raises(function() lucid.generator(1, "quantum") end, "unknown generator kind")
  T.truthy(lucid.is_generator(lucid.generator(1)))
  T.eq(lucid.generator(1, "philox"):kind(), "philox")
  T.eq(lucid.generator(1, "cpu-libm"):kind(), "cpu-libm")
end)

T.done()
