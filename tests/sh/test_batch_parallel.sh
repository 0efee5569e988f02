#!/bin/sh
# lucid batch under GNU parallel: two shards of one manifest run at the
# same time, merged, equal one unsharded run.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
: "${LUCID_SRCDIR:?LUCID_SRCDIR must name the source tree}"
if ! command -v parallel >/dev/null 2>&1 || ! parallel --version 2>/dev/null | grep -q "GNU parallel"; then
    echo "# GNU parallel is not installed (Debian package: parallel); skipped"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-batch-par.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
model="$LUCID_SRCDIR/models/tiny-a"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

for i in 0 1 2 3 4; do
    printf '{"recipe": "txt2img", "options": {"model": "%s", "prompt": "shape %d", "steps": 3, "width": 64, "height": 64, "sampler": "ddim"}}\n' "$model" "$i"
done >m.jsonl

if "$LUCID_BIN" batch m.jsonl --out-dir ref --journal ref.journal 2>/dev/null; then ok "reference run"; else not_ok "reference run"; fi
# the command of lucid-batch(1)'s GNU parallel example
if parallel --will-cite -j 2 "$LUCID_BIN" batch m.jsonl --out-dir par --shard {}/2 ::: 0 1 2>err; then
    ok "two shards under GNU parallel"
else
    not_ok "two shards under GNU parallel" "$(cat err)"
fi
[ -f m.jsonl.journal.0-of-2 ] && [ -f m.jsonl.journal.1-of-2 ] && ok "one journal per shard" || not_ok "one journal per shard" "$(ls)"
if "$LUCID_BIN" batch --merge m.jsonl --out-dir par 2>err; then ok "merge"; else not_ok "merge" "$(cat err)"; fi
same=1
for f in 00000.png 00001.png 00002.png 00003.png 00004.png; do
    cmp -s "ref/$f" "par/$f" || { same=0; echo "# $f differs or is missing"; }
done
[ "$(ls par | wc -l)" -eq 5 ] || same=0
[ $same -eq 1 ] && ok "parallel shards equal the unsharded run" || not_ok "parallel shards equal the unsharded run"
[ "$(wc -l <m.jsonl.journal)" -eq 5 ] && ok "merged journal has five jobs" || not_ok "merged journal has five jobs"
echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
