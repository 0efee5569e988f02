#include "host.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "l_common.h"

static lua_State *global_L;

#define DEBUG_TRACEBACK_KEY "lucid.host.debug_traceback"

static int traceback(lua_State *L);

/* True when the hook fires on entering an error handler (ours or
 * debug.traceback): a C op that saw Ctrl-C is already raising
 * "interrupted", and raising again inside the handler would turn the
 * message into "error in error handling". */
static int entering_error_handler(lua_State *L, lua_Debug *ar)
{
    if (ar->event != LUA_HOOKCALL || !lua_getinfo(L, "f", ar))
        return 0;
    int yes = lua_tocfunction(L, -1) == traceback;
    if (!yes) {
        lua_getfield(L, LUA_REGISTRYINDEX, DEBUG_TRACEBACK_KEY);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return yes;
}

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    lua_sethook(L, NULL, 0, 0);
    if (entering_error_handler(L, ar))
        return;
    luaL_error(L, "interrupted");
}

/* Batch mode (lucid batch): SIGINT and SIGTERM only set the interrupt
 * flag. C ops poll it and fail with "interrupted"; the batch runner checks
 * it between jobs. No hook: one that fired right after the runner's pcall
 * returned would raise outside it, before the journal is written. */
static volatile sig_atomic_t batch_mode;
static volatile sig_atomic_t caught_signal;

static void on_sigint(int sig)
{
    caught_signal = sig;
    if (lc_interrupted()) {
        /* a second Ctrl-C before the first was acted on: a loop compiled by
         * the JIT never runs the hook, so end the process as the default
         * action would */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    lc_interrupt_request();
    if (global_L && !batch_mode)
        lua_sethook(global_L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void lucid_host_catch_sigint(lua_State *L, int on)
{
    global_L = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_sigint : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (!on)
        sigaction(SIGTERM, &sa, NULL);
}

/* sys.catch_batch_signals(): batch mode, SIGTERM handled as SIGINT */
static int host_catch_batch_signals(lua_State *L)
{
    (void)L;
    batch_mode = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

/* sys.caught_signal() -> the number of the last SIGINT/SIGTERM seen, or 0 */
static int host_caught_signal(lua_State *L)
{
    lua_pushinteger(L, caught_signal);
    return 1;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    /* debug.traceback(msg, 2) */
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushstring(L, msg);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

int lucid_host_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != 0) {
        fprintf(stderr, "lucid: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return rc;
}

static int preload_core(lua_State *L)
{
    return luaopen_lucid_core(L);
}

int lucid_host_main(const char *home, int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "lucid: cannot create a Lua state (out of memory)\n");
        return 1;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_setfield(L, LUA_REGISTRYINDEX, DEBUG_TRACEBACK_KEY);
    lua_pop(L, 1);

    /* package.path: home/lua first, so the installed modules win over any
     * LUA_PATH leftovers */
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", home, home);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, preload_core);
    lua_setfield(L, -2, "lucid.core");
    lua_pop(L, 2);

    int rc = 1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lucid.core");
    if (lucid_host_pcall(L, 1, 1) != 0)
        goto out;
    lua_newtable(L);
    lua_pushstring(L, home);
    lua_setfield(L, -2, "home");
    lua_pushfstring(L, "%s/lua", home);
    lua_setfield(L, -2, "lua");
    lua_pushfstring(L, "%s/recipes", home);
    lua_setfield(L, -2, "recipes");
    lua_pushfstring(L, "%s/models", home);
    lua_setfield(L, -2, "models");
    lua_setfield(L, -2, "paths");
    lua_getfield(L, -1, "sys");
    if (lua_istable(L, -1)) {
        lua_pushcfunction(L, host_catch_batch_signals);
        lua_setfield(L, -2, "catch_batch_signals");
        lua_pushcfunction(L, host_caught_signal);
        lua_setfield(L, -2, "caught_signal");
    }
    lua_pop(L, 2);

    lucid_host_catch_sigint(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lucid.cli");
    if (lucid_host_pcall(L, 1, 1) != 0)
        goto out;
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    if (lucid_host_pcall(L, 1, 1) != 0)
        goto out;
    rc = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
out:
    fflush(stdout);
    lucid_host_catch_sigint(NULL, 0);
    lua_close(L);
    return rc;
}
