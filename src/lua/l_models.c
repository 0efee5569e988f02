#include "l_common.h"

void ll_open_models(lua_State *L)
{
    (void)L;
}
