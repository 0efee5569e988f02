#!/bin/sh
# Recipes from the command line: replay gives identical bytes, the thread
# count does not change a result, every bundled recipe has --help,
# ddim_inversion prints its PSNR, bad arguments leave no output file.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
: "${LUCID_TESTDATA:?LUCID_TESTDATA must name tests/data}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-recipes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
model="$LUCID_TESTDATA/golden/tiny-a"

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
# check NAME CMD...: CMD exits 0
check() {
    name=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; then ok "$name"; else
        not_ok "$name" "stderr: $(cat "$tmp/err")"; fi
}
# same NAME A B: files A and B are byte-identical
same() {
    if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1" "$2 and $3 differ"; fi
}

small="--model $model --seed 11 --steps 4 --width 64 --height 64 --quiet"

# replay: the recorded recipe and options give the same file
check "txt2img runs" "$LUCID_BIN" run txt2img --prompt "a red circle" --negative "blue" $small --out "$tmp/a.png"
check "replay runs" "$LUCID_BIN" replay "$tmp/a.png" --out "$tmp/a2.png" --quiet
same "replay of txt2img is byte-identical" "$tmp/a.png" "$tmp/a2.png"

# a negative grid and an img2img result replay too
check "negative runs" "$LUCID_BIN" run negative --prompt "a cat" --negative "a dog" $small --out "$tmp/n.png"
check "replay of negative runs" "$LUCID_BIN" replay "$tmp/n.png" --out "$tmp/n2.png" --quiet
same "replay of negative is byte-identical" "$tmp/n.png" "$tmp/n2.png"
check "img2img runs" "$LUCID_BIN" run img2img --init-image "$tmp/a.png" --strength 0.6 --prompt "x" \
    --model "$model" --seed 3 --steps 4 --quiet --out "$tmp/i.png"
check "replay of img2img runs" "$LUCID_BIN" replay "$tmp/i.png" --out "$tmp/i2.png" --quiet
same "replay of img2img is byte-identical" "$tmp/i.png" "$tmp/i2.png"

# previews: a TAESD decode every N steps next to the output
check "txt2img --preview 2" "$LUCID_BIN" run txt2img --prompt "a cat" $small --preview 2 --out "$tmp/pv.png"
if [ -s "$tmp/pv.png.preview.png" ]; then ok "preview written"; else not_ok "preview written"; fi

# threads: the same seed gives the same bytes with 1 and 2 threads
check "txt2img --threads 1" "$LUCID_BIN" --threads 1 run txt2img --prompt "a cat" $small --sampler dpmpp_2m --out "$tmp/t1.png"
check "txt2img --threads 2" "$LUCID_BIN" --threads 2 run txt2img --prompt "a cat" $small --sampler dpmpp_2m --out "$tmp/t2.png"
same "1 and 2 threads give identical images" "$tmp/t1.png" "$tmp/t2.png"
check "inpaint --threads 1" "$LUCID_BIN" --threads 1 run inpaint --init-image "$tmp/a.png" --mask "$tmp/n.png" \
    --model "$model" --seed 2 --steps 3 --quiet --out "$tmp/p1.png"
check "inpaint --threads 2" "$LUCID_BIN" --threads 2 run inpaint --init-image "$tmp/a.png" --mask "$tmp/n.png" \
    --model "$model" --seed 2 --steps 3 --quiet --width 64 --height 64 --out "$tmp/p2.png"
same "inpaint with 1 and 2 threads" "$tmp/p1.png" "$tmp/p2.png"

# every recipe describes its options
for r in txt2img img2img inpaint negative delayed_negative ddim_inversion; do
    if "$LUCID_BIN" run "$r" --help >"$tmp/help" 2>&1 && grep -q -- "--out" "$tmp/help"; then
        ok "$r --help"; else not_ok "$r --help" "$(cat "$tmp/help")"; fi
done

# ddim_inversion prints the reconstruction PSNR on stdout
"$LUCID_BIN" run ddim_inversion --model "$model" --prompt "a cat" --init-image "$tmp/a.png" --steps 3 \
    --quiet --out "$tmp/inv.png" >"$tmp/out" 2>"$tmp/err"
if grep -Eq '^reconstruction PSNR [0-9.]+ dB' "$tmp/out"; then ok "ddim_inversion prints PSNR"; else
    not_ok "ddim_inversion prints PSNR" "stdout: $(cat "$tmp/out")" "stderr: $(cat "$tmp/err")"; fi

# delayed_negative writes its CSV and plot next to the grid
check "delayed_negative runs" "$LUCID_BIN" run delayed_negative --prompt "a cat on a sofa" --negative "a dog" \
    $small --starts 0,0.5 --out "$tmp/d.png"
if [ -f "$tmp/d.csv" ] && [ "$(wc -l <"$tmp/d.csv")" -eq 5 ]; then ok "delayed_negative CSV: header + 4 steps"; else
    not_ok "delayed_negative CSV" "$(cat "$tmp/d.csv" 2>&1)"; fi
if [ -f "$tmp/d.rt.png" ]; then ok "delayed_negative plot"; else not_ok "delayed_negative plot"; fi

# bad arguments: a message naming the problem, no output file
bad() {
    name=$1 pattern=$2
    shift 2
    "$@" --out "$tmp/bad.png" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    if [ "$status" -ne 0 ] && grep -qF -- "$pattern" "$tmp/err" && [ ! -e "$tmp/bad.png" ]; then ok "$name"; else
        not_ok "$name" "exit $status" "stderr: $(cat "$tmp/err")"; fi
}
bad "unknown sampler" "--sampler: expected one of" "$LUCID_BIN" run txt2img --model "$model" --sampler nope
bad "steps 0" "--steps: must be at least 1" "$LUCID_BIN" run txt2img --model "$model" --steps 0
bad "strength > 1" "--strength: must be at most 1" "$LUCID_BIN" run img2img --model "$model" --init-image "$tmp/a.png" --strength 2
bad "strength < 0" "--strength: must be at least 0" "$LUCID_BIN" run img2img --model "$model" --init-image "$tmp/a.png" --strength -0.5
bad "missing init image option" "missing required option --init-image" "$LUCID_BIN" run img2img --model "$model"
bad "init image file absent" "--init-image: cannot open" "$LUCID_BIN" run img2img --model "$model" --init-image "$tmp/none.png"
bad "mask file absent" "--mask: cannot open" "$LUCID_BIN" run inpaint --model "$model" --init-image "$tmp/a.png" --mask "$tmp/none.png"
if grep -q "stack traceback" "$tmp/err"; then not_ok "user errors print no traceback" "$(cat "$tmp/err")"; else
    ok "user errors print no traceback"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
