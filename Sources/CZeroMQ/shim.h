#ifndef TICKPLANT_CZEROMQ_SHIM_H
#define TICKPLANT_CZEROMQ_SHIM_H
#include <zmq.h>
// eventfd wakes a thread that sleeps in zmq_poll (ZeroMQ.PollWakeup); Glibc's Swift module does not export it.
#include <sys/eventfd.h>
#include <pthread.h>

// Names the calling thread for the kernel, as ps -L, top -H and perf show it (15 bytes at most). glibc declares
// pthread_setname_np only under _GNU_SOURCE, which Swift's Glibc module is not built with.
extern int pthread_setname_np(pthread_t thread, const char *name);
static inline int tickplant_name_thread(const char *name) { return pthread_setname_np(pthread_self(), name); }
#endif
