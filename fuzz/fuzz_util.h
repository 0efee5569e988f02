/* Shared pieces of the libFuzzer targets: the input as a file (the
 * parsers under test read files) and an embedded Lua state with lucid.core
 * for the parsers written in Lua. Each target is built by `make fuzz`. */
#ifndef LUCID_FUZZ_UTIL_H
#define LUCID_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "core/error.h"
#include "lua/l_common.h"

#ifndef LUCID_SRCDIR
#define LUCID_SRCDIR "."
#endif

/* The input written to one temporary file per process (suffix: the
 * extension some parsers look at); returns its path. */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[256];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/lucid-fuzz-%ld%s", dir && *dir ? dir : "/tmp",
                 (long)getpid(), suffix);
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (size && fwrite(data, 1, size, f) != size) {
        perror(path);
        abort();
    }
    fclose(f);
    return path;
}

/* A Lua state whose package.path finds the source tree's lua/ and whose
 * registry holds the function `src` returns (the code under test). */
static inline lua_State *fuzz_lua(const char *src)
{
    lua_State *L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, LUCID_SRCDIR "/lua/?.lua;" LUCID_SRCDIR "/lua/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_lucid_core);
    lua_setfield(L, -2, "lucid.core");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lucid.core");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_newtable(L);
    lua_pushstring(L, LUCID_SRCDIR "/recipes");
    lua_setfield(L, -2, "recipes");
    lua_pushstring(L, LUCID_SRCDIR "/models");
    lua_setfield(L, -2, "models");
    lua_setfield(L, -2, "paths");
    lua_pop(L, 1);
    if (luaL_loadstring(L, src) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "lucid.fuzz.fn");
    return L;
}

/* Calls the function under test with the input as a string. Lua errors
 * are the expected answer to bad input; only crashes are findings. */
static inline void fuzz_lua_call(lua_State *L, const uint8_t *data, size_t size)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "lucid.fuzz.fn");
    lua_pushlstring(L, (const char *)data, size);
    lua_pcall(L, 1, 0, 0);
    lua_settop(L, 0);
    lc_err_clear();
}

#endif
