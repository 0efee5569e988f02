-- A1111 prompt syntax: emphasis, escapes, BREAK, editing schedules and
-- chunking, checked against the values A1111's own parser gives.
local T = require "testlib"
local P = require "lucid.prompt"

local function flat(res)
  local t = {}
  for _, r in ipairs(res) do t[#t + 1] = string.format("%s=%.6g", r[1], r[2]) end
  return table.concat(t, "|")
end

T.case("emphasis as parse_prompt_attention", function()
  -- the examples from A1111's docstring
  T.eq(flat(P.parse_attention("normal text")), "normal text=1")
  T.eq(flat(P.parse_attention("an (important) word")), "an =1|important=1.1| word=1")
  T.eq(flat(P.parse_attention("(unbalanced")), "unbalanced=1.1")
  T.eq(flat(P.parse_attention("\\(literal\\]")), "(literal]=1")
  T.eq(flat(P.parse_attention("(unnecessary)(parens)")), "unnecessaryparens=1.1")
  T.eq(flat(P.parse_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")),
    "a =1|house=1.573|" .. " =1.1|on=1|" .. " a =1.1|hill=0.55|, sun, =1.1|sky=1.4641|.=1.1")
  T.eq(flat(P.parse_attention("[word]")), string.format("word=%.6g", 1 / 1.1))
  T.eq(flat(P.parse_attention("")), "=1")
end)

T.case("BREAK splits into separate entries", function()
  T.eq(flat(P.parse_attention("a cat BREAK a dog")), "a cat=1|BREAK=-1|a dog=1")
  -- BREAK inside a word is no separator
  T.eq(flat(P.parse_attention("BREAKFAST")), "BREAKFAST=1")
end)

T.case("prompt editing schedules", function()
  local s = P.schedule("a [cat:dog:0.5] photo", 10)
  T.eq(#s, 2)
  T.eq(s[1][1], 5); T.eq(s[1][2], "a cat photo")
  T.eq(s[2][1], 10); T.eq(s[2][2], "a dog photo")
  -- [to:when] adds, [from::when] removes
  s = P.schedule("[:ugly:0.3]", 10)
  T.eq(s[1][1], 3); T.eq(s[1][2], ""); T.eq(s[2][2], "ugly")
  s = P.schedule("photo [blurry::4]", 10)
  T.eq(s[1][1], 4); T.eq(s[1][2], "photo blurry"); T.eq(s[2][2], "photo ")
  -- integer steps beyond the count clamp to the end
  s = P.schedule("[a:b:50]", 20)
  T.eq(#s, 1); T.eq(s[1][2], "a")
  -- alternation changes every step
  s = P.schedule("[cat|dog]", 4)
  T.eq(#s, 4); T.eq(s[1][2], "cat"); T.eq(s[2][2], "dog"); T.eq(s[3][2], "cat")
  -- plain brackets are emphasis, not editing
  s = P.schedule("[word] (x:1.2)", 10)
  T.eq(#s, 1); T.eq(s[1][2], "[word] (x:1.2)")
  -- the schedule index follows A1111: text i applies while step <= end_at
  s = P.schedule("[:neg:0.3]", 10)
  T.eq(P.schedule_index(s, 3), 1); T.eq(P.schedule_index(s, 4), 2)
end)

T.case("unclosed brackets stay text, in linear time", function()
  -- each "[" or "(" parses once per position (the fuzzer found the
  -- exponential re-parse: tests/data/fuzz/prompt)
  local text = "a " .. string.rep("[", 60) .. "cat:dog:0.5" .. string.rep("(", 60)
  local s = P.schedule(text, 10)
  T.eq(#s, 1); T.eq(s[1][2], text)
  s = P.schedule(string.rep("[", 40) .. "[cat:dog:0.5]", 10)
  T.eq(#s, 2)
  T.eq(s[1][2], string.rep("[", 40) .. "cat"); T.eq(s[2][2], string.rep("[", 40) .. "dog")
end)

T.case("--negative-start fractions match [:neg:f]", function()
  local g = require "lucid.guidance"
  -- [:neg:0.3] with 10 steps: the empty prompt through 0-based step 3
  T.eq(g.step_of(0.3, 10), 4)
  T.eq(g.step_of(4, 10), 4)
  T.eq(g.step_of(0.05, 10), 0)
  local r = g.delayed_negative(7.5, 4)
  T.eq(r:branches(4, 10)[1], "empty"); T.eq(r:branches(5, 10)[1], "neg")
end)

-- a fake tokenizer: one id per word, ',' is 267
local fake = {bos_id = 49406, eos_id = 49407, pad_id = 49407, comma_id = 267}
function fake:encode_raw(text)
  local ids = {49406}
  for w in text:gmatch("%S+") do
    if w == "," then ids[#ids + 1] = 267 else ids[#ids + 1] = 1000 + #w end
  end
  ids[#ids + 1] = 49407
  return ids
end

T.case("chunking: 75 tokens per chunk, BOS/EOS, EOS padding, weights", function()
  local c = P.chunks(fake, "a (bb:1.5)")
  T.eq(#c, 1); T.eq(#c[1].tokens, 77)
  T.eq(c[1].tokens[1], 49406); T.eq(c[1].tokens[2], 1001); T.eq(c[1].tokens[3], 1002)
  T.eq(c[1].tokens[4], 49407); T.eq(c[1].tokens[77], 49407)
  T.eq(c[1].weights[3], 1.5); T.eq(c[1].weights[2], 1.0)
  T.truthy(not P.is_plain(c))
  T.truthy(P.is_plain(P.chunks(fake, "a b c")))
  local words = {}
  for i = 1, 100 do words[i] = "w" end
  c = P.chunks(fake, table.concat(words, " "))
  T.eq(#c, 2); T.eq(c[2].tokens[1], 49406); T.eq(c[2].tokens[26], 1001); T.eq(c[2].tokens[27], 49407)
  c = P.chunks(fake, "a BREAK b")
  T.eq(#c, 2); T.eq(c[2].tokens[2], 1001)
end)

T.case("chunking: a comma within 20 tokens of the end moves the tail", function()
  local words = {}
  for i = 1, 70 do words[#words + 1] = "w" end
  words[#words + 1] = ","
  for i = 1, 10 do words[#words + 1] = "xx" end
  local c = P.chunks(fake, table.concat(words, " "))
  T.eq(#c, 2)
  -- the first chunk ends after the comma (71 tokens + padding)
  T.eq(c[1].tokens[72], 267); T.eq(c[1].tokens[73], 49407)
  T.eq(c[2].tokens[2], 1002)
end)

T.done()
