#!/bin/sh
# lucid batch: faulty jobs, kill and resume, shards and merge, Slurm.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
: "${LUCID_SRCDIR:?LUCID_SRCDIR must name the source tree}"
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-batch.XXXXXX")
bg=
trap '[ -n "$bg" ] && kill -9 $bg 2>/dev/null; rm -rf "$tmp"' EXIT
model="$LUCID_SRCDIR/models/tiny-a"

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
check() { name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name" "failed: $*"; fi; }

# run NAME EXPECTED_STATUS CMD...: stdout/stderr in $out/$err
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
has() {
    if printf '%s' "$2" | grep -qF -- "$3"; then ok "$1"; else not_ok "$1" "missing: $3" "in: $2"; fi
}
# job PROMPT [EXTRA_JSON_FIELDS]: one manifest line for the tiny model
job() {
    printf '{"recipe": "txt2img", "options": {"model": "%s", "prompt": "%s", "steps": 3, "width": 64, "height": 64, "sampler": "ddim"%s}}\n' \
        "$model" "$1" "${2:-}"
}
# same_files DIR1 DIR2: the same names with byte-identical contents
same_files() {
    a=$(cd "$1" && ls | sort | tr '\n' ' ')
    b=$(cd "$2" && ls | sort | tr '\n' ' ')
    [ "$a" = "$b" ] || { echo "# $1: $a; $2: $b"; return 1; }
    for f in $a; do cmp -s "$1/$f" "$2/$f" || { echo "# $f differs"; return 1; }; done
    [ -n "$a" ]
}
no_temps() { [ -z "$(find "$1" -name '*.tmp-*' -o -name '*.tmp')" ]; }
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

cd "$tmp" || exit 1

# ---- usage ----
run "batch --help" 0 "$LUCID_BIN" batch --help
has "help names --shard" "$out" "--shard I/N"
run "no manifest" 2 "$LUCID_BIN" batch
has "missing manifest message" "$err" "missing the manifest"
run "manifest that does not exist" 2 "$LUCID_BIN" batch nothere.jsonl
has "names the missing manifest" "$err" "nothere.jsonl"
run "bad --shard" 2 "$LUCID_BIN" batch x.jsonl --shard 2/2
has "shard range message" "$err" "0 <= I < N"
run "unknown batch option" 2 "$LUCID_BIN" batch x.jsonl --frob
has "unknown option named" "$err" "--frob"

# ---- a manifest with faulty jobs: errors recorded, the others done ----
{
    job "a red ball"
    job "a blue cube" ', "bogus": 1'
    echo '# a comment, not a job'
    job "a green cone" ', "steps": "three"'
    echo '{"recipe": "txt2img", "options": {"model": "'"$tmp"'/no-such-model", "steps": 2, "width": 64, "height": 64}}'
    echo 'this is not JSON'
    job "a yellow star" ', "seed": 7'
} >faulty.jsonl
run "faulty manifest exits 1" 1 "$LUCID_BIN" batch faulty.jsonl --out-dir fo
check "good job 0 written" test -f fo/00000.png
check "good job 5 written" test -f fo/00005.png
check "no output for the invalid jobs" test ! -e fo/00001.png -a ! -e fo/00002.png -a ! -e fo/00003.png
j=$(cat faulty.jsonl.journal)
has "unknown option recorded" "$j" '"error":"unknown option --bogus","index":1,"status":"failed"'
has "bad value recorded" "$j" "--steps: expected an integer, got 'three'"
has "runtime failure (missing model) recorded" "$j" '"index":3'
has "missing model named" "$j" "no-such-model"
has "malformed line recorded" "$j" '"error":"not valid JSON'
has "done job has its hash" "$j" "\"path\":\"fo/00005.png\",\"sha256\":\"$(sha256sum fo/00005.png | cut -c1-64)\""
has "stderr names the failed job and line" "$err" "job 1 (line 2) failed: unknown option --bogus"
has "summary" "$err" "2 of 6 jobs done"
n=$(lines faulty.jsonl.journal)
run "re-run: still exit 1, nothing redone" 1 "$LUCID_BIN" batch faulty.jsonl --out-dir fo
has "re-run skips the done jobs" "$err" "2 of 6 jobs done (2 already done)"
check "re-run adds no journal lines" test "$(lines faulty.jsonl.journal)" -eq "$n"

# ---- the flat job form; two jobs naming one output ----
{
    echo '{"recipe": "txt2img", "prompt": "a red ball", "model": "'"$model"'", "steps": 2, "width": 64, "height": 64, "seed": 5}'
    echo '{"recipe": "txt2img", "options": {"prompt": "a red ball", "model": "'"$model"'", "steps": 2, "width": 64, "height": 64, "seed": 5, "out": "same.png"}}'
    echo '{"recipe": "txt2img", "options": {"prompt": "a red ball", "model": "'"$model"'", "steps": 2, "width": 64, "height": 64, "seed": 6, "out": "./same.png"}}'
} >flat.jsonl
run "flat form and a shared output: exit 1" 1 "$LUCID_BIN" batch flat.jsonl --out-dir fl
check "flat job equals the nested one" cmp -s fl/00000.png fl/same.png
has "the second writer of an output fails" "$err" "job 2 (line 3) failed: output fl/./same.png is also job 1's output"

# ---- reference: one uninterrupted run ----
: >m.jsonl
for i in 0 1 2 3 4 5; do job "thing number $i" >>m.jsonl; done
run "reference run" 0 "$LUCID_BIN" batch m.jsonl --out-dir ref --journal ref.journal
check "reference: six images" test "$(ls ref | wc -l)" -eq 6
check "reference journal: six records" test "$(lines ref.journal)" -eq 6
# the same seeds from the index: a second run elsewhere gives the same bytes
run "second reference run" 0 "$LUCID_BIN" batch m.jsonl --out-dir ref2 --journal ref2.journal
check "runs are deterministic" same_files ref ref2
run "other --base-seed" 0 "$LUCID_BIN" batch m.jsonl --out-dir other --journal other.journal --base-seed 99
check "--base-seed changes the images" test "$(sha256sum <ref/00000.png)" != "$(sha256sum <other/00000.png)"

# ---- killed mid-run (SIGTERM), then resumed ----
# wait_journal FILE PID: until FILE has a line (or the process ended)
wait_journal() {
    k=0
    while [ "$(lines "$1")" -lt 1 ] && kill -0 "$2" 2>/dev/null && [ $k -lt 600 ]; do
        sleep 0.05; k=$((k + 1))
    done
}
"$LUCID_BIN" batch m.jsonl --out-dir kt --journal kt.journal >/dev/null 2>"$tmp/kt.err" </dev/null &
bg=$!
wait_journal kt.journal $bg
kill -TERM $bg 2>/dev/null
wait $bg
status=$?
bg=
if [ "$(lines kt.journal)" -lt 6 ]; then
    check "SIGTERM: exit 143" test "$status" -eq 143
    has "SIGTERM: says how to resume" "$(cat "$tmp/kt.err")" "run the same command again to resume"
else
    echo "# the batch finished before SIGTERM arrived; interruption not exercised"
    not_ok "SIGTERM arrived before the end"
fi
check "SIGTERM: no temporary files" no_temps kt
check "SIGTERM: every image on disk is in the journal" \
    test "$(ls kt | wc -l)" -eq "$(grep -c '"status":"done"' kt.journal)"
run "resume after SIGTERM" 0 "$LUCID_BIN" batch m.jsonl --out-dir kt --journal kt.journal
has "resume skips finished jobs" "$err" "already done"
check "resumed run equals the uninterrupted one" same_files ref kt
check "resume: no temporary files" no_temps kt

# ---- SIGKILL: no chance to clean up; a writer's temporary file is left ----
"$LUCID_BIN" batch m.jsonl --out-dir kk --journal kk.journal >/dev/null 2>&1 </dev/null &
bg=$!
wait_journal kk.journal $bg
kill -KILL $bg 2>/dev/null
wait $bg
bg=
# what an atomic writer killed between create and rename leaves behind
printf 'partial' >kk/00004.png.tmp-Ab12Cd
# and a half-written journal line (killed inside write())
printf '{"index":5,"status":"do' >>kk.journal
run "resume after SIGKILL" 0 "$LUCID_BIN" batch m.jsonl --out-dir kk --journal kk.journal
check "resumed after SIGKILL equals the uninterrupted run" same_files ref kk
check "stray temporary file removed" no_temps kk

# ---- a damaged output is redone, not trusted ----
printf 'x' >>kt/00002.png
rm kt/00003.png
run "resume with damaged outputs" 0 "$LUCID_BIN" batch m.jsonl --out-dir kt --journal kt.journal
has "four verified, two redone" "$err" "6 of 6 jobs done (4 already done)"
check "damaged outputs redone byte-identical" same_files ref kt

# ---- two shards + merge equal one unsharded run ----
run "shard 0/2" 0 "$LUCID_BIN" batch m.jsonl --out-dir sh --shard 0/2
has "shard 0 ran three jobs" "$err" "3 of 3 jobs done (shard 0/2)"
check "shard 0 ran the even jobs" test -f sh/00000.png -a -f sh/00002.png -a -f sh/00004.png -a ! -e sh/00001.png
check "shard 0 journal name" test -f m.jsonl.journal.0-of-2
run "merge with a shard missing" 1 "$LUCID_BIN" batch --merge m.jsonl --out-dir sh
has "missing jobs reported" "$err" "job 1 (line 2): missing"
run "shard 1/2" 0 "$LUCID_BIN" batch m.jsonl --out-dir sh --shard=1/2
run "merge" 0 "$LUCID_BIN" batch --merge m.jsonl --out-dir sh
has "merge summary" "$err" "6 of 6 jobs done and verified"
check "merged journal: one record per job" test "$(lines m.jsonl.journal)" -eq 6
check "shards equal the unsharded run" same_files ref sh
for i in 0 1 2 3 4 5; do
    a=$(grep "\"index\":$i," ref.journal | grep -o '"sha256":"[0-9a-f]*"')
    b=$(grep "\"index\":$i," m.jsonl.journal | grep -o '"sha256":"[0-9a-f]*"')
    [ -n "$a" ] && [ "$a" = "$b" ] || not_ok "merged journal hash of job $i" "$a" "$b"
done
ok "merged journal hashes equal the unsharded journal's"
printf 'x' >>sh/00003.png
run "merge detects a changed output" 1 "$LUCID_BIN" batch --merge m.jsonl --out-dir sh
has "changed output named" "$err" "sh/00003.png does not match its recorded SHA-256"

# ---- Slurm array variables pick the shard ----
run "Slurm task 2 of --array=1-2" 0 env SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=2 \
    "$LUCID_BIN" batch m.jsonl --out-dir sl
check "Slurm: shard 1/2 journal" test -f m.jsonl.journal.1-of-2
check "Slurm: odd jobs only" test -f sl/00001.png -a -f sl/00005.png -a ! -e sl/00000.png
run "bad Slurm variables" 2 env SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_COUNT=2 "$LUCID_BIN" batch m.jsonl --out-dir sl
has "bad Slurm variables explained" "$err" "SLURM_ARRAY_TASK_ID=5"

# ---- a Lua manifest ----
cat >m.lua <<EOF
local jobs = {}
for i = 0, 5 do
  jobs[#jobs + 1] = {recipe = "txt2img", options = {model = "$model", prompt = "thing number " .. i,
    steps = 3, width = 64, height = 64, sampler = "ddim"}}
end
return jobs
EOF
run "Lua manifest" 0 "$LUCID_BIN" batch m.lua --out-dir lm
check "Lua manifest equals the JSON Lines one" same_files ref lm

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
