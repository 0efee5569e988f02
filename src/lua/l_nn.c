#include "l_common.h"

void ll_open_nn(lua_State *L)
{
    (void)L;
}
