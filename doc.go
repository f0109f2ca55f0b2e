// Package eventer brings libmtev's "Eventer (ACO)" to Go: shared-stack
// coroutines (libaco's model) and an epoll event loop (libmtev's eventer),
// written in C, with Go callbacks and Go coroutines that cooperate with C
// callbacks and C coroutines on the same loop threads.
//
// # Loops
//
// Init creates the loops (one per CPU by default).  Each loop is a C
// eventer loop driven by a goroutine locked to its own OS thread: the
// driver calls the C eventer_run_once, which waits on epoll, runs C
// callbacks and resumes C coroutines itself, and hands the Go work that is
// due (a Go callback to call, a Go coroutine to resume) back to the
// driver, in the same order the C loop would have run it.  One iteration
// runs, in order: work queued from other threads; due timers; tasks and
// triggered events; recurrent events; epoll; fd callbacks.
//
// # Callbacks
//
// NewFdEvent, AddIn, AddAt and AddRecurrent register Go callbacks with the
// C callback contract (see Callback).  A Go callback is also an ordinary
// eventer_func_t for C code: C that calls it directly reaches Go through a
// trampoline that first switches to the thread's own stack.
//
// # Coroutines
//
// AcoStart runs a Go function as a coroutine on a loop.  Its blocking
// calls — Read, Write, Accept on an AcoEvent; Connect, Sleep, Yield,
// SimpleAsynch, RunAsynch, Join on the Co — look blocking, but while they
// wait the loop runs everything else.  Each is the C eventer_aco_* call,
// run for the Go coroutine by a small C proxy coroutine: one
// implementation of the semantics for both languages.  Timeouts are
// time.Durations (0: none); a timeout error satisfies
// errors.Is(err, os.ErrDeadlineExceeded).
//
// # The rules
//
// Go code runs only on goroutine stacks, and a C coroutine's stack is
// copied in and out of a shared stack, so Go and C coroutines are kept
// apart by these rules (each one crashed a prototype when broken):
//
//  1. Go coroutines are created and resumed only by their loop's driver;
//     AcoStart from anywhere queues the start to the loop.
//  2. A Go coroutine blocks only at the top of its own body: not from
//     another goroutine, not inside a callback, not while holding an extra
//     runtime.LockOSThread.
//  3. C never yields a coroutine while a Go callback frame is on its stack.
//  4. Go never runs on a coroutine's share stack.
//  5. C memory holds no Go pointers: Go functions are registered by id;
//     buffers of a parked operation are pinned until it completes or is
//     cancelled (a cancel unregisters from epoll before the unpin).
//  6. No panic or runtime.Goexit crosses C.  A panic in a coroutine or a
//     callback ends the program as a goroutine's would, with the
//     coroutine's stack; a Goexit in a coroutine is reported as an error.
//  7. Ordinary Go blocking inside a coroutine (channels, time.Sleep,
//     sync.Mutex) is legal but stalls the whole loop thread.
//
// Breaking rule 1 or 2 panics with a *MisuseError before the runtime
// would kill the process.
package eventer
