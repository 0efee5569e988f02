#!/bin/sh
# `make install` into a staging directory: the binary, every Lua module
# (subfolders included), the recipes, data, model and man pages land under
# the prefix, and the staged lucid runs from another directory with only
# LUCID_HOME pointing at the staged data (an install at the real prefix
# needs not even that: main.c looks in the configured data directory).
set -u
: "${LUCID_BUILDDIR:?LUCID_BUILDDIR must name the build tree}"
: "${LUCID_SRCDIR:?LUCID_SRCDIR must name the source tree}"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stage="$tmp/stage"

if ! out=$(env MAKEFLAGS= make -s -C "$LUCID_BUILDDIR" install DESTDIR="$stage" 2>&1); then
    not_ok "make install DESTDIR=..." "$out"
    echo "$pass passed, $fail failed"
    exit 1
fi
ok "make install DESTDIR=..."

bin=$(find "$stage" -path '*/bin/lucid' -type f | head -n 1)
[ -n "$bin" ] && [ -x "$bin" ] && ok "the binary is installed" || not_ok "no bin/lucid under the stage"
cli=$(find "$stage" -path '*/lua/lucid/cli.lua' | head -n 1)
home=${cli%/lua/lucid/cli.lua}
[ -n "$cli" ] && ok "the Lua modules are installed" || not_ok "no lua/lucid/cli.lua under the stage"

# every Lua file, recipe and data file of the source tree is installed
missing=""
for f in $(cd "$LUCID_SRCDIR" && find lua recipes data -type f ! -name '.*'); do
    [ -f "$home/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] && ok "lua/, recipes/ and data/ are installed as trees" || not_ok "not installed:$missing"
for page in man1/lucid.1 man3/lucid-lua.3 man7/lucid-recipes.7; do
    [ -n "$(find "$stage" -path "*/man/$page")" ] && ok "man page $page" || not_ok "man page $page missing"
done

cd "$tmp" || exit 1
out=$(LUCID_HOME="$home" "$bin" -e 'local c = require "lucid.core" print(require("lucid").version, c.paths.home)' 2>&1)
[ "$out" = "$(printf '%s\t%s' "$("$bin" -e 'print(require"lucid".version)')" "$home")" ] &&
    ok "the staged lucid loads its modules from the staged data" || not_ok "staged run" "$out"
if LUCID_HOME="$home" "$bin" -e 'os.exit(lucid.image and lucid.image.load and 0 or 1)' 2>/dev/null; then
    out=$(LUCID_HOME="$home" "$bin" demo --width 32 --out "$tmp/d.png" --quiet 2>&1)
    [ $? -eq 0 ] && [ -f "$tmp/d.png" ] && ok "the installed demo recipe runs" || not_ok "installed demo" "$out"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
