/* libFuzzer target: the A1111 prompt parser in lua/lucid/prompt.lua
 * (attention weights, BREAK, [from:to:when] editing, alternation) through
 * an embedded Lua state. A Lua error is a fine answer to a bad prompt;
 * crashes and hangs are findings. */
#include "fuzz_util.h"

static lua_State *L;

static const char *code =
    "local P = require('lucid.prompt')\n"
    "return function(s)\n"
    "  P.parse_attention(s)\n"
    "  local sched = P.schedule(s, 8)\n"
    "  if type(sched) == 'table' and P.schedule_index then\n"
    "    for step = 0, 7 do P.schedule_index(sched, step) end\n"
    "  end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L)
        L = fuzz_lua(code);
    fuzz_lua_call(L, data, size);
    return 0;
}
