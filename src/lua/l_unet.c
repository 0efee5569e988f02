#include "l_common.h"

void ll_open_unet(lua_State *L)
{
    (void)L;
}
