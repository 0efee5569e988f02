-- Recipe option parsing (lua/lucid/args.lua).
local T = require "testlib"
local args = require "lucid.args"

local specs = args.specs{
  {"prompt", type = "string", default = "a cat", help = "what to draw"},
  {"steps", type = "int", default = 20, min = 1},
  {"seed", "int"},
  {"strength", "number"},
  {"out", "path"},
  {"quiet", "flag"},
  {"controlnet", type = "path", ["repeat"] = true},
  {"latents-out", "path"},
  {"sampler", type = "string", default = "ddim", choices = {"ddim", "euler"}},
  "cfg",
  {"width", default = 64},
}

local function parse(...)
  return args.parse(specs, {...})
end

T.case("defaults fill unset options", function()
  local o = assert(parse())
  T.eq(o.prompt, "a cat"); T.eq(o.steps, 20); T.eq(o.seed, nil)
  T.eq(o.quiet, false); T.eq(type(o.controlnet), "table"); T.eq(#o.controlnet, 0)
  T.eq(o.sampler, "ddim")
end)

T.case("--opt value and --opt=value", function()
  local o = assert(parse("--steps", "7", "--prompt=a dog", "--strength", "0.25", "--seed=-3"))
  T.eq(o.steps, 7); T.eq(o.prompt, "a dog"); T.eq(o.strength, 0.25); T.eq(o.seed, -3)
end)

T.case("a value may start with a dash or contain '='", function()
  local o = assert(parse("--prompt", "--x=y", "--strength", "-1.5e-1"))
  T.eq(o.prompt, "--x=y"); T.eq(o.strength, -0.15)
end)

T.case("flags: --flag, --no-flag, --flag=no", function()
  T.eq(assert(parse("--quiet")).quiet, true)
  T.eq(assert(parse("--quiet", "--no-quiet")).quiet, false)
  T.eq(assert(parse("--quiet=no")).quiet, false)
  T.eq(assert(parse("--quiet=yes")).quiet, true)
  local o, err = parse("--quiet=maybe")
  T.eq(o, nil); T.truthy(err:find("--quiet: expected yes or no, got 'maybe'", 1, true), err)
end)

T.case("--no- works only for flags", function()
  local o, err = parse("--no-steps")
  T.eq(o, nil); T.eq(err, "unknown option --no-steps")
end)

T.case("dashes and underscores name the same option", function()
  T.eq(assert(parse("--latents-out", "l.safetensors")).latents_out, "l.safetensors")
  T.eq(assert(parse("--latents_out=m.safetensors")).latents_out, "m.safetensors")
end)

T.case("repeatable options collect a list", function()
  local o = assert(parse("--controlnet", "a", "--controlnet=b"))
  T.eq(#o.controlnet, 2); T.eq(o.controlnet[1], "a"); T.eq(o.controlnet[2], "b")
end)

T.case("a later value of a plain option wins", function()
  T.eq(assert(parse("--steps", "3", "--steps", "4")).steps, 4)
end)

T.case("integer type errors", function()
  local o, err = parse("--steps", "abc")
  T.eq(o, nil); T.eq(err, "--steps: expected an integer, got 'abc'")
  o, err = parse("--steps", "2.5")
  T.eq(err, "--steps: expected an integer, got '2.5'")
  o, err = parse("--steps=")
  T.eq(err, "--steps: expected an integer, got ''")
end)

T.case("number type errors", function()
  local o, err = parse("--strength", "lots")
  T.eq(o, nil); T.eq(err, "--strength: expected a number, got 'lots'")
  o, err = parse("--strength", "nan")
  T.eq(err, "--strength: expected a number, got 'nan'")
end)

T.case("bounds and choices", function()
  local o, err = parse("--steps", "0")
  T.eq(o, nil); T.eq(err, "--steps: must be at least 1, got 0")
  o, err = parse("--sampler", "plms")
  T.eq(err, "--sampler: expected one of ddim, euler; got 'plms'")
  T.eq(assert(parse("--sampler", "euler")).sampler, "euler")
end)

T.case("missing value, unknown option, stray argument", function()
  local o, err = parse("--steps")
  T.eq(o, nil); T.eq(err, "--steps: missing its value")
  o, err = parse("--frobnicate", "3")
  T.eq(err, "unknown option --frobnicate")
  o, err = parse("stray")
  T.eq(err, "unexpected argument 'stray' (options start with --)")
end)

T.case("positional arguments when the recipe accepts them", function()
  local o = assert(args.parse(specs, {"a.png", "--steps", "2", "b.png", "--", "--steps"}, 1, true))
  T.eq(o.steps, 2); T.eq(#o.args, 3)
  T.eq(o.args[1], "a.png"); T.eq(o.args[2], "b.png"); T.eq(o.args[3], "--steps")
end)

T.case("a named positional: one bare word is that option", function()
  local o = assert(args.parse(specs, {"--steps", "2", "a red ball"}, 1, "prompt"))
  T.eq(o.prompt, "a red ball"); T.eq(o.steps, 2); T.eq(o.args, nil)
  o = assert(args.parse(specs, {"--steps", "2"}, 1, "prompt"))
  T.eq(o.prompt, "a cat")
  local none, err = args.parse(specs, {"one", "two"}, 1, "prompt")
  T.eq(none, nil); T.truthy(err:find("unexpected argument 'two'", 1, true), err)
  none, err = args.parse(specs, {"one", "--prompt", "two"}, 1, "prompt")
  T.eq(none, nil); T.truthy(err:find("unexpected argument 'one' (--prompt is given already", 1, true), err)
  none, err = args.parse(specs, {"x"}, 1, "steps")
  T.eq(none, nil); T.truthy(err:find("--steps: expected an integer", 1, true), err)
  T.truthy(args.usage({positional = "prompt"}, specs, "lucid run t"):find("usage: lucid run t [options] [PROMPT]", 1, true))
  -- a label that names no option keeps collecting the words
  o = assert(args.parse(specs, {"a.png", "b.png"}, 1, "FILE..."))
  T.eq(#o.args, 2); T.eq(o.prompt, "a cat")
  T.truthy(args.usage({positional = "FILE..."}, specs, "lucid run t"):find("[options] FILE...", 1, true))
end)

T.case("parsing starts at the given index", function()
  local o = assert(args.parse(specs, {"run", "x", "--steps", "5"}, 3))
  T.eq(o.steps, 5)
end)

T.case("--help is reported, not an error", function()
  local o = assert(parse("--steps", "abc", "--help"))
  T.eq(o.help, true)
end)

T.case("required options", function()
  local s = args.specs{{"model", type = "path", required = true}}
  local o, err = args.parse(s, {})
  T.eq(o, nil); T.eq(err, "missing required option --model")
  T.eq(assert(args.parse(s, {"--model", "m"})).model, "m")
end)

T.case("common options by name, with overrides", function()
  local s = args.specs{"model", "steps", {"steps2", "int"}, "latents_out", {"width", default = 64}}
  T.eq(s[1].type, "path"); T.eq(s[2].default, args.common.steps.default)
  T.eq(s[4].name, "latents-out"); T.eq(s[4].key, "latents_out")
  T.eq(s[5].default, 64); T.eq(s[5].type, "int")
  local o, err = args.parse(s, {"--width", "65"})
  T.eq(o, nil); T.eq(err, "--width: must be a multiple of 8, got 65")
  T.raises(function() args.specs{"no_such_common"} end, "not a common option")
  T.raises(function() args.specs{{"x", "integer"}} end, "unknown type 'integer'")
  T.raises(function() args.specs{"seed", "seed"} end, "declared twice")
end)

T.case("the ~ of a path expands to $HOME", function()
  local home = os.getenv("HOME")
  if home then T.eq(assert(parse("--out", "~/x.png")).out, home .. "/x.png") end
end)

T.case("usage lists every option with type, default and help", function()
  local u = args.usage({description = "Draws."}, specs, "lucid run t")
  T.truthy(u:find("usage: lucid run t [options]", 1, true), u)
  T.truthy(u:find("Draws.", 1, true))
  T.truthy(u:find("--prompt TEXT%s+what to draw %[default: a cat%]"), u)
  T.truthy(u:find("--steps N%s+%[default: 20%]"), u)
  T.truthy(u:find("--[no-]quiet", 1, true))
  T.truthy(u:find("--controlnet FILE%s+%(repeatable%)"), u)
  T.truthy(u:find("(ddim|euler)", 1, true))
  T.truthy(u:find("--help%s+show this help"))
end)

T.case("to_argv gives back a command line that parses to the same options", function()
  local o = assert(parse("--steps", "9", "--strength", "0.1", "--quiet", "--controlnet", "a",
    "--controlnet", "b", "--prompt", "x y"))
  local argv = args.to_argv(specs, o)
  local o2 = assert(args.parse(specs, argv))
  for _, s in ipairs(specs) do
    if s["repeat"] then
      T.eq(#o2[s.key], #o[s.key], s.key)
      for i = 1, #o[s.key] do T.eq(o2[s.key][i], o[s.key][i], s.key) end
    else
      T.eq(o2[s.key], o[s.key], s.key)
    end
  end
  -- defaults are not repeated
  for _, a in ipairs(argv) do T.truthy(a ~= "--sampler", "default sampler in argv") end
end)

T.case("number_str round-trips exactly", function()
  for _, v in ipairs{0.1, 1 / 3, 7.5, -2, 1e-300, 123456789012} do
    T.eq(tonumber(args.number_str(v)), v)
  end
  T.eq(args.number_str(0.1), "0.1"); T.eq(args.number_str(7), "7")
end)

T.done()
