#ifndef TICKPLANT_EVENT_POLL_H
#define TICKPLANT_EVENT_POLL_H
// epoll for the WebSocket load clients (Operations.WebSocketLoad). Swift's Glibc module does not export
// <sys/epoll.h>, and struct epoll_event is packed on x86-64, so these functions take plain integers: a descriptor's
// token (the caller's index for it) and its event bits.
#include <stdint.h>

enum {
    TICKPLANT_POLL_IN = 0x001,
    TICKPLANT_POLL_OUT = 0x004,
    TICKPLANT_POLL_ERROR = 0x008,
    TICKPLANT_POLL_HANGUP = 0x010,
};

/// A new epoll instance (close-on-exec), or -1 with errno set.
int tickplant_poll_create(void);

/// Watches `descriptor` for `events` (0: none, while it stays registered), reported with `token`; `modify` for a
/// descriptor already watched. 0, or -1 with errno set.
int tickplant_poll_watch(int poll, int descriptor, uint32_t events, uint64_t token, int modify);

/// Waits at most `timeout_ms` for events: up to `capacity` of them into tokens[i] and events[i]. Returns how many,
/// 0 on time-out (or an interrupted wait), -1 with errno set.
int tickplant_poll_wait(int poll, uint64_t *tokens, uint32_t *events, int capacity, int timeout_ms);

/// Sets the calling thread's nice value (Linux keeps one per thread; Glibc's Swift module has no gettid): the
/// load clients that play rule-breakers run at 19, so that their own CPU does not count against the server they
/// are measured beside. 0, or -1 with errno set.
int tickplant_thread_set_nice(int nice);

#endif
