#include "l_common.h"

void ll_open_files(lua_State *L)
{
    (void)L;
}
