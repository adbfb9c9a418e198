#ifndef TICKPLANT_CTICKPROTO_H
#define TICKPLANT_CTICKPROTO_H
#include "tick.pb-c.h"
#include "control.pb-c.h"
#endif
