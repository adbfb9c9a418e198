#include "crc32c.h"

#include <string.h>

static uint32_t table[256];
static int use_instruction;

// Filled once when the library loads, before any thread can call in.
__attribute__((constructor)) static void prepare(void) {
    for (uint32_t index = 0; index < 256; index++) {
        uint32_t value = index;
        for (int bit = 0; bit < 8; bit++) value = (value >> 1) ^ (0x82F63B78u & (0u - (value & 1u)));
        table[index] = value;
    }
#if defined(__x86_64__)
    use_instruction = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *bytes, size_t length) {
    for (size_t index = 0; index < length; index++) crc = table[(crc ^ bytes[index]) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_instruction(uint32_t crc, const unsigned char *bytes,
                                                                      size_t length) {
    uint64_t wide = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        wide = __builtin_ia32_crc32di(wide, word);
        bytes += 8;
        length -= 8;
    }
    uint32_t narrow = (uint32_t)wide;
    while (length > 0) {
        narrow = __builtin_ia32_crc32qi(narrow, *bytes);
        bytes++;
        length--;
    }
    return narrow;
}
#endif

uint32_t tickplant_crc32c(uint32_t crc, const void *bytes, size_t length) {
    crc = ~crc;
#if defined(__x86_64__)
    if (use_instruction) return ~crc32c_instruction(crc, bytes, length);
#endif
    return ~crc32c_table(crc, bytes, length);
}
