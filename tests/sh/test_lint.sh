#!/bin/sh
# Lint: the man pages (mandoc -Tlint, when mandoc is installed), the shell
# scripts, and the Lua sources (no global variables set, no unknown globals read — typos of
# locals show up as the latter), checked from LuaJIT's bytecode.
set -u
: "${LUCID_BIN:?LUCID_BIN must name the built lucid}"
: "${LUCID_SRCDIR:?LUCID_SRCDIR must name the source tree}"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

if command -v mandoc >/dev/null 2>&1; then
    for page in "$LUCID_SRCDIR"/man/*.[1-9]; do
        # -W warning: style notes are not failures, warnings and errors are
        msg=$(mandoc -Tlint -W warning "$page" 2>&1)
        if [ -z "$msg" ]; then ok "mandoc -Tlint $(basename "$page")"; else
            not_ok "mandoc -Tlint $(basename "$page")" "$msg"; fi
    done
else
    echo "# mandoc is not installed: man page lint skipped"
fi

# shell scripts: syntax (sh -n), and shellcheck's warnings when it is installed
for f in "$LUCID_SRCDIR/scripts/bootstrap" "$LUCID_SRCDIR/.ci/run" "$LUCID_SRCDIR"/tests/sh/*.sh; do
    [ -f "$f" ] || continue
    rel=${f#"$LUCID_SRCDIR"/}
    if msg=$(sh -n "$f" 2>&1); then ok "sh -n $rel"; else not_ok "sh -n $rel" "$msg"; fi
    if command -v shellcheck >/dev/null 2>&1; then
        # SC3013: -nt is not POSIX but dash, bash and busybox sh all have it
        if msg=$(shellcheck -S warning -e SC3013 "$f" 2>&1); then ok "shellcheck $rel"; else
            not_ok "shellcheck $rel" "$msg"; fi
    fi
done

files=$(find "$LUCID_SRCDIR/lua" "$LUCID_SRCDIR/recipes" -name '*.lua' 2>/dev/null | sort)
checker=$(mktemp "${TMPDIR:-/tmp}/lucid-lint.XXXXXX")
trap 'rm -f "$checker"' EXIT
cat >"$checker" <<'EOF'
-- Walks every function prototype of each file and reports GSET (a global
-- assigned) and GGET of a name that is not a standard global.
local vmdef = require "jit.vmdef"
local util = require "jit.util"
local bit = require "bit"

local known = {}
for name in ([[_G _VERSION arg assert bit collectgarbage coroutine debug dofile error
  gcinfo getfenv getmetatable io ipairs jit load loadfile loadstring math module
  newproxy next os package pairs pcall print rawequal rawget rawlen rawset require
  select setfenv setmetatable string table tonumber tostring type unpack xpcall]]):gmatch("%S+") do
  known[name] = true
end

local function opname(ins)
  local op = bit.band(ins, 0xff)
  return (vmdef.bcnames:sub(op * 6 + 1, op * 6 + 6):gsub(" ", ""))
end

local problems = 0
local function walk(fn, file)
  local info = util.funcinfo(fn)
  for pc = 1, info.bytecodes or 1e9 do
    local ins = util.funcbc(fn, pc)
    if not ins then break end
    local name = opname(ins)
    if name == "GSET" or name == "GGET" then
      local d = bit.rshift(ins, 16)
      local g = util.funck(fn, -d - 1)
      local line = util.funcinfo(fn, pc).currentline or "?"
      if name == "GSET" then
        print(string.format("%s:%s: sets the global '%s'", file, line, g))
        problems = problems + 1
      elseif not known[g] then
        print(string.format("%s:%s: reads the unknown global '%s'", file, line, g))
        problems = problems + 1
      end
    end
  end
  for n = -1, -1e9, -1 do
    local k = util.funck(fn, n)
    if k == nil then break end
    if type(k) == "proto" then walk(k, file) end
  end
end

for _, file in ipairs{...} do
  local fn, err = loadfile(file)
  if not fn then
    print(err)
    problems = problems + 1
  else
    walk(fn, file)
  end
end
os.exit(problems == 0 and 0 or 1)
EOF
for f in $files; do
    rel=${f#"$LUCID_SRCDIR"/}
    msg=$("$LUCID_BIN" run "$checker" "$f" 2>&1)
    if [ $? -eq 0 ]; then ok "globals: $rel"; else not_ok "globals: $rel" "$msg"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
