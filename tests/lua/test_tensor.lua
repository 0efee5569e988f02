local T = require "testlib"
local lucid = require "lucid"

T.case("construct from a nested table", function()
  local t = lucid.tensor{{1, 2, 3}, {4, 5, 6}}
  T.eq(#t:shape(), 2); T.eq(t:shape()[1], 2); T.eq(t:shape()[2], 3)
  T.eq(t:dtype(), "f32"); T.eq(t:get(2, 3), 6)
end)

T.done()
