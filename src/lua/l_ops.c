#include "l_common.h"

void ll_open_ops(lua_State *L)
{
    (void)L;
}
