/* luaopen_lucid_core: the C half of the `lucid` module, assembled from the
 * binding files. The Lua half (lua/lucid/init.lua) builds the public API on
 * top of it. */
#include "l_common.h"

int luaopen_lucid_core(lua_State *L)
{
    lua_newtable(L);
    ll_open_tensor(L);
    ll_open_ops(L);
    ll_open_nn(L);
    ll_open_rng(L);
    ll_open_tokenizer(L);
    ll_open_files(L);
    ll_open_models(L);
    ll_open_unet(L);
    ll_open_controlnet(L);
    ll_open_json(L);
    ll_open_util(L);
    ll_open_mel(L);
    ll_open_sys(L);
    return 1;
}
