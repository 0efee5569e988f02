#!/bin/sh
# The REPL, driven through a real terminal (tmux): expressions without `=`,
# `_`, multi-line input, Tab completion, Ctrl-C during a computation and at
# the prompt, the history file.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
command -v tmux >/dev/null 2>&1 || { echo "tmux is not installed: REPL tests skipped"; exit 77; }

pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lucid-repl.XXXXXX")
sock="$tmp/tmux.sock"
session=lucid$$
cleanup() { tmux -S "$sock" kill-server 2>/dev/null; sleep 0.3; rm -rf "$tmp"; }
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

screen() { tmux -S "$sock" capture-pane -p -J -S -200 -t "$session"; }
# keys: literal text; key: a named key (Enter, Tab, C-c)
keys() { tmux -S "$sock" send-keys -t "$session" -l -- "$1"; }
key() { tmux -S "$sock" send-keys -t "$session" "$@"; }

# wait_for TEXT [SECONDS]: until the screen shows TEXT (a fixed string)
wait_for() {
    i=0
    limit=$(( ${2:-10} * 10 ))
    while [ $i -lt $limit ]; do
        if screen | grep -qF -- "$1"; then return 0; fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# check NAME TEXT: the screen shows TEXT (tabs show as spaces: use check_re)
check() {
    if wait_for "$2"; then ok "$1"; else not_ok "$1" "screen lacks: $2" "$(screen | grep -v '^$' | tail -15)"; fi
}
# check_re NAME REGEX: the screen shows a line matching the extended regex
check_re() {
    i=0
    while [ $i -lt 100 ]; do
        if screen | grep -qE -- "$2"; then ok "$1"; return; fi
        sleep 0.1
        i=$((i + 1))
    done
    not_ok "$1" "screen lacks a match for: $2" "$(screen | grep -v '^$' | tail -15)"
}

hist="$tmp/history"
tmux -S "$sock" new-session -d -s "$session" -x 120 -y 50 \
    "env LUCID_HISTORY='$hist' HOME='$tmp' TERM=xterm LANG=C.UTF-8 LC_ALL= '$LUCID_BIN'; echo REPL-EXITED \$?; sleep 30"
check "the REPL starts with a banner" "Ctrl-D quits"

keys 'XA = 6 * 7'; key Enter
keys 'XA + 0.5'; key Enter
check "an expression prints without =" "42.5"

keys '_ * 2'; key Enter
check "_ holds the last result" "85"

keys 'function triple(x)'; key Enter
check "an incomplete chunk asks for more" ">> "
keys '  return x * 3'; key Enter
keys 'end'; key Enter
keys 'triple(14), "two"'; key Enter
check_re "a multi-line function works; several results print" '^42 +"two"$'

keys 'print(#"café ü", "café ü")'; key Enter
check_re "UTF-8 input reaches Lua intact" '^8 +café ü$'

keys '{1, 2, k = "v"}'; key Enter
check "tables print their contents" '{1, 2, k = "v"}'

keys 'lucid.zer'; key Tab
keys '{2, 3}'; key Enter
check "Tab completes lucid.zer to lucid.zeros" "lucid.zeros{2, 3}"
check "a tensor prints its shape and statistics" "tensor [2,3] f32  min 0 max 0 mean 0"

keys 'tt = lucid.ones{4}'; key Enter
keys 'tt:num'; key Tab
keys '()'; key Enter
check "Tab completes tensor methods" "tt:numel()"
keys 'tt:sh'; key Tab
keys '()'; key Enter
check "Tab completes t:sh to t:shape" "tt:shape()"
check "and the shape prints as a list" "{4}"

keys '1, nil, 3'; key Enter
check_re "results print in order, nils included" '^1 +nil +3$'

keys 'error("oops")'; key Enter
check_re "an error prints its message" '^(stdin:1: )?oops$'
keys 'print("after error")'; key Enter
check "the REPL goes on after an error" "after error"

keys 'while true do end'; key Enter
sleep 0.5
key C-c
check "Ctrl-C interrupts a running loop" "interrupted"
keys 'print("still " .. "alive")'; key Enter
check "the prompt works after Ctrl-C" "still alive"

# Ctrl-C while C code runs: the op (or the hook when it returns) stops the
# loop; the message must not turn into "error in error handling"
keys 'cx = lucid.zeros{1, 16, 128, 128}; cw = lucid.zeros{16, 16, 3, 3}; for i = 1, 100000 do cy = lucid.conv2d(cx, cw, nil, {padding = 1}) end'
key Enter
sleep 0.7
key C-c
keys 'print("after " .. "conv")'; key Enter
check "the prompt works after Ctrl-C in C code" "after conv"
if screen | grep -qF "error in error handling"; then
    not_ok "Ctrl-C in C code gives a clean message" "$(screen | grep -v '^$' | tail -8)"
else
    ok "Ctrl-C in C code gives a clean message"
fi

keys 'this line is dropped'
key C-c
keys 'print("clean " .. "line")'; key Enter
check "Ctrl-C at the prompt clears the line" "clean line"
if screen | grep -qF "this line is droppedprint"; then
    not_ok "the dropped line did not reach Lua"
else
    ok "the dropped line did not reach Lua"
fi

keys 'ga, gb = 1'; key Enter
keys 'print(ga, gb)'; key Enter
check_re "statements run" '^1 +nil$'

key C-d
check "Ctrl-D leaves with status 0" "REPL-EXITED 0"

if [ -f "$hist" ] && grep -qF 'triple(14)' "$hist"; then
    ok "history file written"
else
    not_ok "history file written" "$(cat "$hist" 2>/dev/null)"
fi

# the history comes back in a new session (Up arrow)
tmux -S "$sock" kill-session -t "$session" 2>/dev/null
tmux -S "$sock" new-session -d -s "$session" -x 120 -y 50 \
    "env LUCID_HISTORY='$hist' HOME='$tmp' TERM=xterm '$LUCID_BIN'; sleep 30"
wait_for "Ctrl-D quits" >/dev/null
key Up
check "history is loaded in a new session" 'print(ga, gb)'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
