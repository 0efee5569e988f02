local T = require "testlib"
local lucid = require "lucid"

local dir = T.data("golden/tiny-a/tokenizer")

-- expected ids straight from transformers' CLIPTokenizer (golden.json,
-- case "tokenizer"): "a photo of a cat" and the 102-token prompt
local CAT = {49406, 320, 1125, 539, 320, 2368, 49407}

T.case("encode pads to the model length with the model's pad token", function()
  local tok = lucid.tokenizer(dir)
  local ids = tok:encode("a photo of a cat")
  T.eq(ids:dtype(), "i64")
  T.eq(ids:shape()[1], 1); T.eq(ids:shape()[2], 77)
  for i = 1, #CAT do T.eq(ids:get(1, i), CAT[i], "id " .. i) end
  for i = #CAT + 1, 77 do T.eq(ids:get(1, i), 49407, "pad " .. i) end
  local info = tok:info()
  T.eq(info.bos, 49406); T.eq(info.eos, 49407); T.eq(info.pad, 49407)
  T.eq(info.max_length, 77); T.eq(info.vocab_size, 49408)
end)

T.case("a list of prompts encodes to one row each", function()
  local tok = lucid.tokenizer(dir)
  local ids = tok:encode({"a photo of a cat", ""})
  T.eq(ids:shape()[1], 2); T.eq(ids:shape()[2], 77)
  for i = 1, #CAT do T.eq(ids:get(1, i), CAT[i]) end
  T.eq(ids:get(2, 1), 49406); T.eq(ids:get(2, 2), 49407); T.eq(ids:get(2, 77), 49407)
  T.raises(function() tok:encode({"a", 5}) end, "entry 2")
  T.raises(function() tok:encode({}) end, "non-empty")
end)

T.case("encode_raw and tokens", function()
  local tok = lucid.tokenizer(dir)
  local raw = tok:encode_raw("A Photo Of A CAT!!!")
  local want = {49406, 320, 1125, 539, 320, 2368, 995, 49407}
  T.eq(#raw, #want)
  for i = 1, #want do T.eq(raw[i], want[i]) end
  local toks = tok:tokens("don't won't")
  local wt = {"don</w>", "'t</w>", "won</w>", "'t</w>"}
  T.eq(#toks, #wt)
  for i = 1, #wt do T.eq(toks[i], wt[i]) end
  T.eq(#tok:encode_raw(""), 2)
end)

T.case("long prompts truncate keeping EOS last", function()
  local tok = lucid.tokenizer(dir)
  local text = string.rep("a ", 100)
  T.eq(#tok:encode_raw(text), 102)
  local ids = tok:encode(text)
  T.eq(ids:get(1, 1), 49406)
  for i = 2, 76 do T.eq(ids:get(1, i), 320) end
  T.eq(ids:get(1, 77), 49407)
  local short = tok:encode(text, 5)
  T.eq(short:shape()[2], 5); T.eq(short:get(1, 5), 49407)
end)

T.case("decode, lookup and the OpenAI cleanup mode", function()
  local tok = lucid.tokenizer(dir)
  T.eq(tok:decode(tok:encode_raw("A Photo of a cat, ok"), true), "a photo of a cat, ok")
  T.eq(tok:decode(tok:encode_raw("it's 3 . 5")), "<|startoftext|>it's 3. 5 <|endoftext|>")
  T.eq(tok:decode(tok:encode("a cat"), true), "a cat")
  T.eq(tok:id("cat</w>"), 2368); T.eq(tok:token(2368), "cat</w>")
  T.eq(tok:id("not a token"), nil)
  -- transformers keeps "&amp;" as text; OpenAI's tokenizer unescapes it
  local hf = tok:encode_raw("&amp;")
  T.eq(#hf, 5) -- & amp ;
  local oa = lucid.tokenizer(dir, {clean = "openai"}):encode_raw("&amp;")
  T.eq(#oa, 3); T.eq(oa[2], 261) -- "&</w>"
end)

T.case("the bundled SD 1.x tokenizer with max_length = 77", function()
  local src = os.getenv("LUCID_SRCDIR") or "."
  local tok = lucid.tokenizer(src .. "/data/clip", {max_length = 77})
  local ids = tok:encode("a photo of a cat")
  T.eq(ids:shape()[2], 77)
  for i = 1, #CAT do T.eq(ids:get(1, i), CAT[i], "id " .. i) end
  T.eq(ids:get(1, 77), 49407)
  T.raises(function() lucid.tokenizer(dir, {max_length = 1}) end, "no room")
end)

T.case("bad input is reported, not fatal", function()
  local tok = lucid.tokenizer(dir)
  local ids = tok:encode_raw("\255\254 cat \195")
  T.eq(#ids, 3); T.eq(ids[2], 2368)
  T.raises(function() lucid.tokenizer("/nonexistent") end, "/nonexistent/vocab.json")
  T.raises(function() tok:decode({1.5}) end, "not a token id")
  T.raises(function() tok:decode({99999}) end, "99999")
  T.raises(function() lucid.tokenizer(dir, {clean = "ftfy"}) end, "clean must be")
end)

T.done()
