/*
 * acoeventer.h - everything public in aco-eventer, for C users.
 *
 *   cc prog.c $(pkg-config --cflags --libs --static acoeventer)
 */
#ifndef ACOEVENTER_H
#define ACOEVENTER_H

#include "aco.h"

#endif /* ACOEVENTER_H */
