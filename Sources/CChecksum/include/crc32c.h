#ifndef TICKPLANT_CRC32C_H
#define TICKPLANT_CRC32C_H
// CRC-32C (Castagnoli) for the plant's journal records: the SSE 4.2 instruction where the processor has it, a table
// otherwise. Swift reaches neither the instruction nor a system CRC-32C, hence this small C target.
#include <stddef.h>
#include <stdint.h>

/// The CRC-32C of `length` bytes at `bytes`, continuing from `crc` (0 to start).
uint32_t tickplant_crc32c(uint32_t crc, const void *bytes, size_t length);

#endif
