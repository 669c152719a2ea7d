// ODR check: this TU and its twin (b.cpp) compile the same body, twin.inc,
// which includes every header; both are linked into one program.
#define ODR_TWIN odr_a
#include "twin.inc"
