#ifndef TICKPLANT_SOCKET_BATCH_H
#define TICKPLANT_SOCKET_BATCH_H
// Batched datagram receive for feedd. Swift's Glibc module does not export recvmmsg or struct mmsghdr, so this small
// C function makes the call; the buffers belong to the caller (FeedHandler.DatagramBatch).
#include <stddef.h>
#include <sys/socket.h>

/// The most datagrams one call takes.
#define TICKPLANT_BATCH_MAX 64

/// Reads up to `capacity` (at most TICKPLANT_BATCH_MAX) waiting datagrams without blocking, datagram i into
/// buffer + i * slot_size, its length into lengths[i] and, when `sources` is not NULL, its sender's address into
/// sources[i]. A length above slot_size means the datagram was longer than its slot and was cut. Returns the number
/// read (0 when none is waiting) or -1 with errno set.
int tickplant_receive_batch(int descriptor, unsigned char *buffer, size_t slot_size, unsigned int capacity,
                            size_t *lengths, struct sockaddr_storage *sources);

#endif
