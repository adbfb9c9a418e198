#ifndef TICKPLANT_FUZZER_DRIVER_H
#define TICKPLANT_FUZZER_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry for a program with its own main (libclang_rt.fuzzer, linked by -sanitize=fuzzer): the fuzzing
/// loop, or each given input once, with `argv` as libFuzzer's flags and corpus directories.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
