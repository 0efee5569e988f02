/* The embedding: a Lua state with the lucid modules, a Ctrl-C hook and a
 * protected, traceback-printing runner. */
#ifndef LL_HOST_H
#define LL_HOST_H

#include <lua.h>

/* Creates a state whose package.path finds home/lua and whose
 * lucid.core.paths names home's recipes/ and models/; runs
 * require("lucid.cli").main(argv). Returns the process exit status. */
int lucid_host_main(const char *home, int argc, char **argv);

/* Runs the function on top of the stack (with nargs below it) under
 * a traceback handler; on error prints "lucid: message\ntraceback" to
 * stderr and returns nonzero. */
int lucid_host_pcall(lua_State *L, int nargs, int nresults);

/* Installs/removes the SIGINT handler that interrupts Lua code (through a
 * hook) and C code (through lc_interrupted()). */
void lucid_host_catch_sigint(lua_State *L, int on);

#endif
