-- The tensor userdata from Lua: construction, 1-based views, element
-- access, conversion to tables, dtype conversion, errors and freeing.
local T = require "testlib"
local lucid = require "lucid"

T.case("construct from a nested table", function()
  local t = lucid.tensor{{1, 2, 3}, {4, 5, 6}}
  T.eq(#t:shape(), 2); T.eq(t:shape()[1], 2); T.eq(t:shape()[2], 3)
  T.eq(t:dtype(), "f32"); T.eq(t:get(2, 3), 6); T.eq(t:numel(), 6)
  T.eq(lucid.tensor({1, 2}, "i64"):dtype(), "i64")
  T.eq(lucid.zeros{2, 3}:sum():item(), 0)
  T.eq(lucid.ones({2, 3}, "f16"):dtype(), "f16")
  T.eq(lucid.full({2}, 2.5):get(2), 2.5)
end)

T.case("views are 1-based and share storage", function()
  local t = lucid.tensor{{1, 2, 3}, {4, 5, 6}}
  local n = t:narrow(2, 2, 2) -- columns 2..3
  T.eq(n:get(1, 1), 2); T.eq(n:get(2, 2), 6)
  T.eq(n:storage_id(), t:storage_id())
  n:set(-1, 1, 1)
  T.eq(t:get(1, 2), -1)
  local p = t:permute(2, 1)
  T.eq(p:shape()[1], 3); T.eq(p:get(3, 2), 6)
  T.eq(t:select(1, 2):get(3), 6)
  T.eq(t:select(1, -1):get(1), 4) -- negative indices count from the end
  T.eq(t:view(3, 2):get(3, 2), 6)
  T.eq(t:view(-1):shape()[1], 6)
  local e = lucid.tensor{{1}, {2}}:expand(2, 4)
  T.eq(e:get(2, 4), 2)
  T.eq(t:unsqueeze(1):shape()[1], 1)
  T.eq(t:unsqueeze(1):squeeze():dim(), 2)
  T.eq(t:transpose(1, 2):contiguous():is_contiguous(), true)
end)

T.case("tables, items and dtype conversion", function()
  local t = lucid.tensor{{1.5, -2}, {3, 4}}
  local tt = t:totable()
  T.eq(tt[1][1], 1.5); T.eq(tt[2][2], 4)
  T.eq(lucid.tensor{42}:item(), 42)
  T.eq(t:to("i32"):get(1, 1), 1)
  T.eq(t:to("u8"):get(1, 2), 0) -- saturates
  T.eq(t:to("f16"):to("f32"):get(1, 1), 1.5)
  T.eq(t:clone():storage_id() ~= t:storage_id(), true)
  local c = lucid.zeros{2, 2}
  c:copy_(t)
  T.eq(c:get(2, 1), 3)
  c:fill_(9)
  T.eq(c:get(1, 2), 9)
end)

T.case("errors name what is wrong", function()
  local t = lucid.tensor{{1, 2, 3}, {4, 5, 6}}
  T.raises(function() t:narrow(2, 3, 2) end, "narrow")
  T.raises(function() t:narrow(3, 1, 1) end, "dimension 3 out of range for a 2-d tensor")
  T.raises(function() t:get(3, 1) end, "index 3 out of range 1..2 in dimension 1")
  T.raises(function() t:view(4, 2) end, "has 8 elements but the tensor [2,3] has 6")
  T.raises(function() t:item() end, "has 6 elements, not 1")
  T.raises(function() lucid.tensor{{1, 2}, {3}} end, "ragged table")
  T.raises(function() lucid.tensor{"a"} end, "not a number")
  T.raises(function() t:to("f128") end, "unknown dtype 'f128'")
  T.raises(function() lucid.zeros{2, -1} end, "negative")
end)

T.case("free releases at once and later use is an error", function()
  local before = lucid.live_bytes()
  local t = lucid.zeros({1000, 1000}, "f32")
  T.eq(lucid.live_bytes() - before, 4e6)
  t:free()
  T.eq(lucid.live_bytes(), before)
  T.raises(function() t:shape() end, "freed")
end)

T.case("a loop does not hold every temporary alive", function()
  local before = lucid.live_bytes()
  local x = lucid.zeros({256, 1024})
  for _ = 1, 200 do x = x:clone() end -- 200 MB of garbage in 1 MB pieces
  T.truthy(lucid.live_bytes() - before < 150e6, "the GC was stepped by tensor bytes")
end)

T.done()
