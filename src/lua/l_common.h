/* Shared helpers for the Lua bindings, the only C that knows about Lua.
 * Lua dimensions are 1-based; convert here, never in the core. Errors from
 * the core are raised with luaL_error(L, "%s", lc_errmsg()). */
#ifndef LL_COMMON_H
#define LL_COMMON_H

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../core/tensor.h"

#define LL_TENSOR_MT "lucid.tensor"

/* userdata holding one reference */
typedef struct {
    lc_tensor *t;
} ll_tensor_ud;

/* Pushes a tensor, taking over the caller's reference. NULL raises the
 * current lc_errmsg(). Steps the GC when live tensor bytes grow. */
void ll_push_tensor(lua_State *L, lc_tensor *t);
lc_tensor *ll_check_tensor(lua_State *L, int idx);
lc_tensor *ll_test_tensor(lua_State *L, int idx); /* NULL if not a tensor */
/* A tensor argument, or a number (0-d f32 tensor, new ref), or a nested
 * table of numbers. Returns a new reference the caller frees. */
lc_tensor *ll_to_tensor(lua_State *L, int idx);
/* shape as a table {2,3} or as varargs of integers starting at idx */
int ll_check_shape(lua_State *L, int idx, int64_t *shape);
void ll_push_shape(lua_State *L, int ndim, const int64_t *shape);
/* 1-based Lua dim (negative counts from the end) to 0-based C dim */
int ll_check_dim(lua_State *L, int idx, int ndim);
int ll_opt_dtype(lua_State *L, int idx, lc_dtype def);
/* raises lc_errmsg() */
int ll_error(lua_State *L);

/* Each binding file registers its functions into the `lucid.core` table
 * at the top of the stack and its methods into the tensor method table
 * (registry field "lucid.tensor.methods"). */
void ll_register(lua_State *L, const luaL_Reg *fns);
void ll_register_methods(lua_State *L, const luaL_Reg *methods);

/* model weights userdata (src/lua/l_models.c) shared by every model binding */
#define LL_WEIGHTS_MT "lucid.weights"
struct lc_weights;
struct lc_weights *ll_check_weights(lua_State *L, int idx);

/* generator userdata (src/lua/l_rng.c), e.g. for scheduler steps */
struct lc_generator;
struct lc_generator *ll_check_generator(lua_State *L, int idx);

/* the binding files' entry points, called by luaopen_lucid_core */
void ll_open_tensor(lua_State *L);
void ll_open_ops(lua_State *L);
void ll_open_nn(lua_State *L);
void ll_open_rng(lua_State *L);
void ll_open_tokenizer(lua_State *L);
void ll_open_files(lua_State *L);
void ll_open_models(lua_State *L);
void ll_open_sys(lua_State *L);
void ll_open_unet(lua_State *L);
void ll_open_json(lua_State *L);
void ll_open_util(lua_State *L);
void ll_open_mel(lua_State *L);
void ll_open_controlnet(lua_State *L);

int luaopen_lucid_core(lua_State *L);

#endif
