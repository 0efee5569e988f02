/* Small utilities the Lua library needs from C: hashing and a monotonic
 * clock (progress bars, benchmarks). */
#include <time.h>

#include "../core/sha256.h"
#include "l_common.h"

/* lucid.sha256(string) -> hex */
static int u_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lc_sha256 h;
    uint8_t d[32];
    char hex[65];
    lc_sha256_init(&h);
    lc_sha256_update(&h, s, n);
    lc_sha256_final(&h, d);
    lc_sha256_hex(d, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* lucid.sha256_file(path) -> hex */
static int u_sha256_file(lua_State *L)
{
    char hex[65];
    if (lc_sha256_file(luaL_checkstring(L, 1), hex) != LC_OK)
        return ll_error(L);
    lua_pushstring(L, hex);
    return 1;
}

/* lucid.clock() -> seconds (monotonic) */
static int u_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    return 1;
}

static const luaL_Reg fns[] = {
    {"sha256", u_sha256}, {"sha256_file", u_sha256_file}, {"clock", u_clock}, {NULL, NULL}};

void ll_open_util(lua_State *L)
{
    ll_register(L, fns);
}
