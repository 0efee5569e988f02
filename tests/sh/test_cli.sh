#!/bin/sh
# The command line: exit codes, messages, recipes and their options.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

# run NAME EXPECTED_STATUS CMD...: runs CMD, keeps stdout in $out and
# stderr in $err, checks the exit status
run() {
    name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$status" -eq "$want" ]; then ok "$name (exit $want)"; else
        not_ok "$name: exit $status, expected $want" "stdout: $out" "stderr: $err"; fi
}
# has NAME TEXT PATTERN: TEXT contains the fixed string PATTERN
has() {
    if printf '%s' "$2" | grep -qF -- "$3"; then ok "$1"; else not_ok "$1" "missing: $3" "in: $2"; fi
}
lacks() {
    if printf '%s' "$2" | grep -qF -- "$3"; then not_ok "$1" "unexpected: $3" "in: $2"; else ok "$1"; fi
}

# ---- -e chunks ----
run "-e prints" 0 "$LUCID_BIN" -e 'print(1+1)'
[ "$out" = "2" ] && ok "-e output is 2" || not_ok "-e output" "got: $out"
run "-e is repeatable, in order, sharing globals" 0 "$LUCID_BIN" -e 'x = 20' -e 'print(x + 1)'
[ "$out" = "21" ] && ok "-e chunks share globals" || not_ok "-e chunks" "got: $out"
run "lucid is a global in -e chunks" 0 "$LUCID_BIN" -e 'print(lucid.version == require("lucid").version)'
[ "$out" = "true" ] && ok "global lucid" || not_ok "global lucid" "got: $out"

# ---- Lua errors: message and traceback, exit 1 ----
run "a Lua error exits 1" 1 "$LUCID_BIN" -e 'local function inner() error("boom here") end inner()'
has "error message on stderr" "$err" "boom here"
has "traceback on stderr" "$err" "stack traceback:"
has "traceback names the function" "$err" "inner"
run "a syntax error exits 1" 1 "$LUCID_BIN" -e 'x = = 1'
has "syntax error message" "$err" "unexpected symbol"
run "a C binding error exits 1" 1 "$LUCID_BIN" -e 'lucid.zeros{2}:view{3}'
[ -n "$err" ] && ok "binding error has a message" || not_ok "binding error message empty"

# ---- usage errors: exit 2 ----
run "unknown option" 2 "$LUCID_BIN" --frobnicate
has "unknown option is named" "$err" "unknown option --frobnicate"
run "unknown command" 2 "$LUCID_BIN" frobnicate
has "unknown command is named" "$err" "unknown command 'frobnicate'"
run "-e without a chunk" 2 "$LUCID_BIN" -e
has "-e missing chunk message" "$err" "-e: missing its Lua chunk"
run "bad --threads" 2 "$LUCID_BIN" --threads abc -e 'print(1)'
has "bad --threads message" "$err" "--threads: expected an integer"
run "run without a target" 2 "$LUCID_BIN" run
run "run of a missing recipe" 2 "$LUCID_BIN" run no_such_recipe_xyz
has "missing recipe message" "$err" "no recipe 'no_such_recipe_xyz'"
run "replay without a file" 2 "$LUCID_BIN" replay

# ---- --version, --help, --threads ----
run "--version" 0 "$LUCID_BIN" --version
has "--version names lucid" "$out" "lucid "
has "--version names LuaJIT" "$out" "LuaJIT"
has "--version names the kernels" "$out" "kernels:"
run "--help" 0 "$LUCID_BIN" --help
for w in "run FILE|NAME" "replay FILE.png" "txt2img" "-e CHUNK" "--threads N" "--version"; do
    has "--help mentions $w" "$out" "$w"
done
has "--help lists the bundled recipes" "$out" "bundled recipes"
has "--help names the demo recipe" "$out" "demo"
run "--threads sizes the pool" 0 "$LUCID_BIN" --threads 3 -e 'print(lucid.sys.threads())'
[ "$out" = "3" ] && ok "--threads 3 gives 3 threads" || not_ok "--threads 3" "got: $out"
run "--threads=N form" 0 "$LUCID_BIN" --threads=1 -e 'print(lucid.sys.threads())'
[ "$out" = "1" ] && ok "--threads=1 gives 1 thread" || not_ok "--threads=1" "got: $out"

# ---- stdin that is not a terminal runs as a chunk ----
printf 'local a = 6\nprint(a * 7)\n' | "$LUCID_BIN" >"$tmp/out" 2>"$tmp/err"
status=$?
[ $status -eq 0 ] && [ "$(cat "$tmp/out")" = "42" ] && ok "stdin runs as a chunk" ||
    not_ok "stdin chunk" "exit $status" "$(cat "$tmp/out" "$tmp/err")"
printf 'error("from stdin")\n' | "$LUCID_BIN" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "from stdin" "$tmp/err" && ok "stdin error exits 1" || not_ok "stdin error"

# ---- recipes ----
cat >"$tmp/r.lua" <<'EOF'
return {
  name = "r",
  description = "A test recipe.",
  options = {
    {"prompt", type = "string", default = "a cat", help = "what to draw"},
    {"steps", type = "int", default = 20, help = "denoising steps"},
    {"strength", "number"},
    {"quiet", "flag"},
    {"controlnet", type = "path", ["repeat"] = true},
    "seed",
  },
  run = function(opts, lucid, ctx)
    print(string.format("prompt=%s steps=%d strength=%s quiet=%s cn=%d seed=%d",
      opts.prompt, opts.steps, tostring(opts.strength), tostring(opts.quiet),
      #opts.controlnet, opts.seed))
    print("lucid=" .. tostring(lucid == require "lucid"))
    local p = ctx.provenance()
    print("provenance=" .. p.recipe .. " " .. table.concat(p.args, " "))
    if opts.steps == 99 then return 3 end
  end,
}
EOF
run "recipe with defaults" 0 "$LUCID_BIN" run "$tmp/r.lua"
has "defaults" "$out" "prompt=a cat steps=20 strength=nil quiet=false cn=0 seed=-1"
has "recipe gets the lucid module" "$out" "lucid=true"
run "recipe options" 0 "$LUCID_BIN" run "$tmp/r.lua" --prompt "a dog" --steps=5 --strength 0.5 \
    --quiet --controlnet a --controlnet b --seed 7
has "parsed options" "$out" "prompt=a dog steps=5 strength=0.5 quiet=true cn=2 seed=7"
has "provenance argv" "$out" "--prompt a dog --steps 5 --strength 0.5 --quiet --controlnet a --controlnet b --seed 7"
run "recipe exit status from run()" 3 "$LUCID_BIN" run "$tmp/r.lua" --steps 99
run "recipe --help" 0 "$LUCID_BIN" run "$tmp/r.lua" --help
has "recipe usage line" "$out" "usage: lucid run $tmp/r.lua [options]"
has "recipe description" "$out" "A test recipe."
has "recipe --prompt help" "$out" "--prompt TEXT"
has "recipe default shown" "$out" "[default: a cat]"
has "recipe --steps" "$out" "--steps N"
has "recipe flag" "$out" "--[no-]quiet"
has "common option help" "$out" "--seed N"
run "recipe --help wins over a bad value" 0 "$LUCID_BIN" run "$tmp/r.lua" --steps x --help
run "recipe: integer type error" 2 "$LUCID_BIN" run "$tmp/r.lua" --steps abc
has "integer type error message" "$err" "--steps: expected an integer, got 'abc'"
has "type error points at --help" "$err" "--help"
run "recipe: number type error" 2 "$LUCID_BIN" run "$tmp/r.lua" --strength much
has "number type error message" "$err" "--strength: expected a number, got 'much'"
run "recipe: unknown option" 2 "$LUCID_BIN" run "$tmp/r.lua" --colour red
has "recipe unknown option message" "$err" "unknown option --colour"
run "recipe: missing value" 2 "$LUCID_BIN" run "$tmp/r.lua" --steps
has "missing value message" "$err" "--steps: missing its value"
run "recipe: --threads is global" 0 "$LUCID_BIN" run "$tmp/r.lua" --threads 1

# a recipe by name from the recipes folder
mkdir -p "$tmp/home/lua" "$tmp/home/recipes"
cp "$tmp/r.lua" "$tmp/home/recipes/named.lua"
LUCID_HOME="$tmp/home" run "LUCID_HOME without lua/ fails" 1 "$LUCID_BIN" -e 'print(1)'
rm -rf "$tmp/home/lua"
ln -s "$LUCID_SRCDIR/lua" "$tmp/home/lua"
LUCID_HOME="$tmp/home" run "a bundled recipe by name" 0 "$LUCID_BIN" run named --steps 4
has "named recipe ran" "$out" "steps=4"
has "named recipe provenance uses the name" "$out" "provenance=named --steps 4"
LUCID_HOME="$tmp/home" run "a bundled recipe's name works without run" 0 "$LUCID_BIN" named --steps 6
has "named recipe ran without run" "$out" "steps=6"
LUCID_HOME="$tmp/home" run "a missing name lists the bundled recipes" 2 "$LUCID_BIN" run nope
has "bundled list" "$err" "bundled: named"

# a recipe that fails inside run(): a Lua error
cat >"$tmp/bad.lua" <<'EOF'
return {options = {}, run = function() error("recipe failed") end}
EOF
run "error inside a recipe exits 1" 1 "$LUCID_BIN" run "$tmp/bad.lua"
has "recipe error message" "$err" "recipe failed"
has "recipe error traceback" "$err" "stack traceback:"
printf 'return {options = {{"x", type = "integer"}}, run = function() end}\n' >"$tmp/decl.lua"
run "a malformed declaration is a Lua error" 1 "$LUCID_BIN" run "$tmp/decl.lua"
has "malformed declaration message" "$err" "unknown type 'integer'"

# plain scripts get their arguments as ...
printf 'print(select("#", ...), ...)\n' >"$tmp/s.lua"
run "plain script with arguments" 0 "$LUCID_BIN" run "$tmp/s.lua" a --b c
[ "$out" = "$(printf '3\ta\t--b\tc')" ] && ok "script sees ..." || not_ok "script ..." "got: $out"
run "a script path works without run" 0 "$LUCID_BIN" "$tmp/s.lua" x
run "-e then a recipe" 0 "$LUCID_BIN" -e 'STEPS_FROM_E = 1' run "$tmp/r.lua"

# txt2img is run txt2img --prompt ...
mkdir -p "$tmp/home2/recipes"
ln -s "$LUCID_SRCDIR/lua" "$tmp/home2/lua"
printf 'return {options = {"prompt", "steps"}, run = function(o) print(o.prompt .. "|" .. o.steps) end}\n' \
    >"$tmp/home2/recipes/txt2img.lua"
LUCID_HOME="$tmp/home2" run "txt2img shorthand" 0 "$LUCID_BIN" txt2img "a red ball" --steps 3
[ "$out" = "a red ball|3" ] && ok "txt2img passes the prompt" || not_ok "txt2img" "got: $out"
LUCID_HOME="$tmp/home2" run "txt2img shorthand: two prompts" 2 "$LUCID_BIN" txt2img "a red ball" --prompt x
has "txt2img shorthand: the clash is named" "$err" "unexpected argument 'a red ball'"
# the bundled recipes take a bare word as the prompt after run too
run "run txt2img PROMPT" 0 "$LUCID_BIN" run txt2img "a red ball" --steps 1 --out "$tmp/bare.png" --seed 3 --quiet
run "run txt2img --prompt PROMPT" 0 "$LUCID_BIN" run txt2img --prompt "a red ball" --steps 1 --out "$tmp/named.png" --seed 3 --quiet
cmp -s "$tmp/bare.png" "$tmp/named.png" && ok "bare and named prompt give the same image" || not_ok "bare and named prompt differ"
run "run txt2img: a prompt twice" 2 "$LUCID_BIN" run txt2img "a" --prompt b --out "$tmp/twice.png"
has "run txt2img: the clash is named" "$err" "--prompt is given already"

# ---- replay ----
run "replay of a missing file" 1 "$LUCID_BIN" replay "$tmp/none.png"
has "replay missing file message" "$err" "no such file"
if "$LUCID_BIN" -e 'os.exit(lucid.image and lucid.image.read_text and lucid.image.save and 0 or 1)' 2>/dev/null; then
    run "replay of an image without provenance" 1 "$LUCID_BIN" replay "$LUCID_TESTDATA/test_images/chelsea.png"
    has "no provenance message" "$err" "records no provenance"
    # an image made by a recipe that records its provenance, replayed with an override
    cat >"$tmp/home2/recipes/mk.lua" <<'EOF'
return {
  options = {{"value", "number", default = 0.5}, {"out", "path", default = "mk.png"}},
  run = function(o, lucid, ctx)
    local t = lucid.full({1, 3, 2, 2}, o.value)
    lucid.image.save(t, o.out, {lucid = lucid.json.encode(ctx.provenance())})
    print("made " .. o.out .. " " .. o.value)
  end,
}
EOF
    LUCID_HOME="$tmp/home2" run "a recipe writes provenance" 0 "$LUCID_BIN" run mk --value 0.25 --out "$tmp/a.png"
    LUCID_HOME="$tmp/home2" run "replay re-runs the recorded recipe" 0 "$LUCID_BIN" replay "$tmp/a.png" --out "$tmp/b.png"
    has "replay used the recorded options and the override" "$out" "made $tmp/b.png 0.25"
    # same pixels (the files differ: each records its own --out)
    same=$("$LUCID_BIN" -e "local a = lucid.image.load('$tmp/a.png'):totable()
      local b = lucid.image.load('$tmp/b.png'):totable()
      local n = 0
      for c = 1, 3 do for y = 1, 2 do for x = 1, 2 do
        if a[1][c][y][x] == b[1][c][y][x] and math.abs(a[1][c][y][x] - 64 / 255) < 1e-6 then n = n + 1 end
      end end end
      print(n)")
    [ "$same" = "12" ] && ok "replay reproduces the pixels" || not_ok "replay pixels differ" "$same"
    lacks "an unchanged recipe gives no warning" "$err" "has changed"
    echo "-- edited" >>"$tmp/home2/recipes/mk.lua"
    LUCID_HOME="$tmp/home2" run "replay after the recipe changed" 0 "$LUCID_BIN" replay "$tmp/a.png" --out "$tmp/c.png"
    has "a changed recipe is reported" "$err" "recipe mk has changed since"
else
    echo "# lucid.image.read_text not available yet: replay tests skipped"
fi

# ---- the bundled demo recipe ----
if "$LUCID_BIN" -e 'os.exit(lucid.image and lucid.image.load and 0 or 1)' 2>/dev/null; then
    run "demo recipe" 0 "$LUCID_BIN" run demo --width 64 --gray 1 --out "$tmp/demo.png" --quiet
    # --gray 1: every channel holds the same luma, so R = G = B
    res=$("$LUCID_BIN" -e "local t = lucid.image.load('$tmp/demo.png')
      local s = t:shape()
      local v = t:totable()[1]
      local bad = 0
      for y = 1, s[3] do for x = 1, s[4] do
        if math.abs(v[1][y][x] - v[2][y][x]) > 1.5 / 255 or math.abs(v[1][y][x] - v[3][y][x]) > 1.5 / 255 then bad = bad + 1 end
      end end
      print(s[2] .. 'x' .. s[3] .. 'x' .. s[4] .. ' ' .. bad)")
    # chelsea.png is 451x300: 64 wide keeps the aspect, round(300 * 64 / 451) = 43
    [ "$res" = "3x43x64 0" ] && ok "demo writes a 64x43 gray image" || not_ok "demo output" "$res"
    run "demo replays" 0 "$LUCID_BIN" replay "$tmp/demo.png" --out "$tmp/demo2.png"
    [ -f "$tmp/demo2.png" ] && ok "demo replay wrote its output" || not_ok "demo replay output missing"
    run "demo: bad option value" 2 "$LUCID_BIN" run demo --gray 2
    has "demo bound message" "$err" "--gray: must be at most 1, got 2"
else
    echo "# lucid.image.load not available yet: demo tests skipped"
fi

# bench/compare.lua: a figure in both runs gets its speed-up, times and
# rates the right way round; figures in one run only are left out
cat >"$tmp/old.jsonl" <<'EOF2'
not json: the human table
{"bench":"sd15","size":512,"threads":2,"component":"unet_cfg_step","seconds":8.0,"gflops":200.0}
{"bench":"sgemm","shape":"sq","impl":"lucid","threads":1,"gflops":100.0}
{"bench":"sd15","size":256,"threads":2,"component":"vae_decode","seconds":3.0}
EOF2
cat >"$tmp/new.jsonl" <<'EOF2'
{"bench":"sd15","size":512,"threads":2,"component":"unet_cfg_step","seconds":4.0,"gflops":400.0}
{"bench":"sgemm","shape":"sq","impl":"lucid","threads":1,"gflops":150.0}
EOF2
run "bench compare" 0 "$LUCID_BIN" run "$LUCID_SRCDIR/bench/compare.lua" "$tmp/old.jsonl" "$tmp/new.jsonl"
has "bench compare: time halved is 2x" "$out" "sd15 512 unet_cfg_step 2                                  8.000      4.000    2.00x  s"
has "bench compare: rate 100 -> 150 is 1.5x" "$out" "1.50x  GFLOP/s"
printf '%s' "$out" | grep -q vae_decode && not_ok "bench compare: a figure of one run only is shown" \
    || ok "bench compare: figures of one run only left out"
run "bench compare: usage" 2 "$LUCID_BIN" run "$LUCID_SRCDIR/bench/compare.lua" "$tmp/old.jsonl"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
