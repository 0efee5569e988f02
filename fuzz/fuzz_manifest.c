/* libFuzzer target: the lucid batch manifest reader (JSON Lines) and the
 * conversion of each job's options to a command line. */
#include "fuzz_util.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        char code[1024];
        snprintf(code, sizeof code,
                 "local B = require('lucid.batch')\n"
                 "local path = [[%s]]\n"
                 "return function(s)\n"
                 "  local f = assert(io.open(path, 'wb')); f:write(s); f:close()\n"
                 "  local jobs = B.read_manifest(path)\n"
                 "  for _, j in ipairs(jobs or {}) do\n"
                 "    if not j.err then B.options_argv(j.options) end\n"
                 "  end\n"
                 "  B.read_journal(path)\n"
                 "end\n",
                 fuzz_file(data, 0, ".jsonl"));
        L = fuzz_lua(code);
    }
    fuzz_lua_call(L, data, size);
    return 0;
}
