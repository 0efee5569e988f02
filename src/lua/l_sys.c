#include "l_common.h"

void ll_open_sys(lua_State *L)
{
    (void)L;
}
