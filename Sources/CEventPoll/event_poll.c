#include "event_poll.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int tickplant_poll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int tickplant_poll_watch(int poll, int descriptor, uint32_t events, uint64_t token, int modify) {
    struct epoll_event event = {.events = events, .data = {.u64 = token}};
    return epoll_ctl(poll, modify ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, descriptor, &event);
}

int tickplant_poll_wait(int poll, uint64_t *tokens, uint32_t *events, int capacity, int timeout_ms) {
    struct epoll_event ready[512];
    if (capacity > 512) capacity = 512;
    int count = epoll_wait(poll, ready, capacity, timeout_ms);
    if (count < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < count; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return count;
}

int tickplant_thread_set_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}
