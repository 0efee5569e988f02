#include "l_common.h"

void ll_open_rng(lua_State *L)
{
    (void)L;
}
