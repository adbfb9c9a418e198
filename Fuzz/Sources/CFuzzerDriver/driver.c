// Only the declaration of libFuzzer's driver (include/CFuzzerDriver.h); libFuzzer defines it.
#include "CFuzzerDriver.h"
