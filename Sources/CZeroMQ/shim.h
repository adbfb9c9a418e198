#ifndef TICKPLANT_CZEROMQ_SHIM_H
#define TICKPLANT_CZEROMQ_SHIM_H
#include <zmq.h>
// eventfd wakes a thread that sleeps in zmq_poll (ZeroMQ.PollWakeup); Glibc's Swift module does not export it.
#include <sys/eventfd.h>
#endif
