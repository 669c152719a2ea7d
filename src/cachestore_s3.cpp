// The S3 driver compiled once, for the cachestore-s3-compiled dependency
// (Meson), pkg-config package and CMake target: every TU of a program built
// against it sees declarations only (docs/getting-started.md, "Separate compilation").
#include "cachestore/s3/src.hpp"
