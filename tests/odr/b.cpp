// ODR check: a.cpp's twin (see there).
#define ODR_TWIN odr_b
#include "twin.inc"
