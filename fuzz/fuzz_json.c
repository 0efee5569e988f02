/* libFuzzer target: lucid.json (cJSON underneath) as configs and
 * manifests use it: decode, and for any value decoded, encode and decode
 * again to the same text. */
#include "fuzz_util.h"

static lua_State *L;

static const char *code =
    "local json = require('lucid.core').json\n"
    "return function(s)\n"
    "  local ok, v = pcall(json.decode, s)\n"
    "  if not ok then return end\n"
    "  local ok2, e = pcall(json.encode, v)\n"
    "  if not ok2 then return end -- e.g. a sparse list: not encodable, said so\n"
    "  local again = json.encode(json.decode(e))\n"
    "  if again ~= e then error('FUZZ-BUG: round trip differs: ' .. e .. ' vs ' .. again) end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        L = fuzz_lua(code);
    lua_getfield(L, LUA_REGISTRYINDEX, "lucid.fuzz.fn");
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        const char *m = lua_tostring(L, -1);
        if (m && strstr(m, "FUZZ-BUG")) {
            fprintf(stderr, "%s\n", m);
            abort();
        }
    }
    lua_settop(L, 0);
    lc_err_clear();
    return 0;
}
