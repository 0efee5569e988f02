--- Minimal test helpers for the Lua tests (run by `lucid run`).
local T = {passed = 0, failed = 0}

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

--- Runs fn as a named test case; failures are counted and reported, not
-- raised, so one file reports every failing case.
function T.case(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    T.passed = T.passed + 1
    print("ok - " .. name)
  else
    T.failed = T.failed + 1
    print("not ok - " .. name .. "\n" .. tostring(err))
  end
end

function T.eq(a, b, msg)
  if a ~= b then error((msg or "values differ") .. ": " .. fmt(a) .. " ~= " .. fmt(b), 2) end
end

function T.near(a, b, tol, msg)
  tol = tol or 1e-6
  if not (math.abs(a - b) <= tol) then
    error(string.format("%s: %.9g vs %.9g (tolerance %g)", msg or "not near", a, b, tol), 2)
  end
end

function T.truthy(v, msg)
  if not v then error(msg or "expected a true value", 2) end
end

--- Expects fn to raise an error whose message contains `pattern` (plain).
function T.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching '" .. pattern .. "'", 2) end
  if pattern and not tostring(err):find(pattern, 1, true) then
    error("error '" .. tostring(err) .. "' does not contain '" .. pattern .. "'", 2)
  end
  return err
end

--- Max |a-b| of two tensors (any dtype).
function T.maxdiff(a, b)
  local sa, sb = a:shape(), b:shape()
  T.eq(#sa, #sb, "rank")
  for i = 1, #sa do T.eq(sa[i], sb[i], "size of dimension " .. i) end
  local lucid = require "lucid"
  return (a:to("f64") - b:to("f64")):abs():max():item()
end

function T.data(rel)
  return (os.getenv("LUCID_TESTDATA") or "tests/data") .. "/" .. rel
end

--- Prints the summary line and exits non-zero on failure.
function T.done()
  print(string.format("%d passed, %d failed", T.passed, T.failed))
  os.exit(T.failed == 0 and 0 or 1)
end

return T
