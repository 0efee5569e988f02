#!/bin/sh
# The command line: exit codes and messages.
set -u
fail=0
out=$("$LUCID_BIN" -e 'print(1+1)' 2>&1)
[ "$out" = "2" ] || { echo "not ok - -e prints: $out"; fail=1; }
echo "$fail" | grep -q 0 && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
