#define _GNU_SOURCE
#include "socket_batch.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int tickplant_receive_batch(int descriptor, unsigned char *buffer, size_t slot_size, unsigned int capacity,
                            size_t *lengths, struct sockaddr_storage *sources) {
    struct mmsghdr messages[TICKPLANT_BATCH_MAX];
    struct iovec vectors[TICKPLANT_BATCH_MAX];
    if (capacity > TICKPLANT_BATCH_MAX) capacity = TICKPLANT_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * capacity);
    for (unsigned int i = 0; i < capacity; i++) {
        vectors[i].iov_base = buffer + (size_t)i * slot_size;
        vectors[i].iov_len = slot_size;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        if (sources != NULL) {
            messages[i].msg_hdr.msg_name = &sources[i];
            messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        }
    }
    int received;
    do {
        received = recvmmsg(descriptor, messages, capacity, MSG_DONTWAIT, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    for (int i = 0; i < received; i++) {
        // The kernel cut a datagram longer than its slot: say so with a length the slot cannot hold.
        lengths[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) ? slot_size + 1 : messages[i].msg_len;
    }
    return received;
}
