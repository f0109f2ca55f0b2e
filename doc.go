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
// triggered events; recurrent events; epoll; fd callbacks.  Loop waits
// for the loops to stop; Shutdown stops them.
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
// calls (Read, Write, Accept, Wait on an AcoEvent; Connect, Sleep, Yield,
// Park, Join, SimpleAsynch, RunAsynch on the Co; Wait, Lock, Send, Recv on
// the sync objects) look blocking, but while they wait the loop runs
// everything else.  A Go coroutine that has to wait in C (for an fd, a
// timer, a semaphore, a job) has a proxy there: a small C waiter record
// that stands in the loop's queues in its place and runs the C
// eventer_aco_* code, so both languages share one implementation of every
// wait.  Park and Join without a timeout wait in Go alone.
//
// # Listeners
//
// libmtev's listener subsystem (C's mtev_listener) hands each accepted
// connection to an aco function: a C one runs in a C coroutine, a Go one
// (RegisterAcoFunction, ListenAco) in a Go coroutine on the connection's
// loop, with the connection as an AcoEvent; when the function returns the
// connection is closed and everything it held released.  Listeners come
// from a libmtev-style XML configuration (LoadConfig before Init, whose
// <eventer><config> then sets the loops up; ListenerInit starts
// /app/listeners//listener, naming C or Go functions by type) or from
// code (ListenAco, with options that mirror the configuration's
// attributes).  The listener accepts in a thread of its own (or on its
// loop), books the connection (its Acceptor: the peer's address, the
// listener's <config>) and sends it to a loop (round robin with fanout).
// Listener.Close stops accepting, lets the connections run for a grace
// period, then cancels them (ErrCanceled); Shutdown stops every listener
// before the loops, unwinding their connections' coroutines.
//
// # Resources
//
// Every Go object that holds C resources (Event, AcoEvent, JobQueue, Sem,
// Mutex, WaitGroup, Chan, Listener) is released by its Close, once: a second Close
// and any other call after it return an error satisfying
// errors.Is(err, ErrClosed) (connection I/O: net.ErrClosed, which
// satisfies both).  Constructors return (T, error).  Shutdown releases
// whatever is still open, so nothing leaks across Init/Shutdown cycles;
// an object of an earlier Init then returns ErrNotInitialized.  Errors
// wrap sentinels for what callers test: ErrClosed, ErrCanceled (Cancel),
// ErrWouldBlock (the Try calls), ErrNotOwner (Mutex.Unlock by another
// coroutine), ErrStopped (the loops are stopping), ErrNotInitialized, and
// os.ErrDeadlineExceeded for timeouts.
//
// # Timeouts
//
// Every blocking call takes a time.Duration: 0 waits without limit, a
// positive one bounds the call, and a negative one has passed already (the
// call does what it can without waiting, then times out).
//
// # Contexts
//
// A Co is cancelled with Cancel, from anywhere: its current or next
// cancellable wait returns ErrCanceled.  Co.CancelOn(ctx) ties that to a
// context.Context (context.AfterFunc underneath); see its Example.
//
// # The rules
//
// Go code runs only on goroutine stacks, and a C coroutine's stack is
// copied in and out of a shared stack, so Go and C coroutines are kept
// apart by these rules (each one crashed a prototype when broken):
//
//  1. Go coroutines are created and resumed only by their loop's driver;
//     AcoStart from anywhere queues the start to the loop.  A coroutine's
//     blocking calls are made by that coroutine alone.
//  2. A Go coroutine blocks only at the top of its own body: not inside a
//     callback, and only with the OS thread locking it started with (a
//     runtime.LockOSThread or UnlockOSThread of its own is undone, and
//     the call panics).
//  3. C never yields a coroutine while a Go callback frame is on its stack.
//  4. Go never runs on a coroutine's shared stack.
//  5. C memory holds no Go pointers: Go functions are registered by id,
//     and a Go buffer is handed to C only for the duration of one call,
//     never across a wait (bytes a wait reads ahead are C memory, copied
//     out when the coroutine resumes).  Nothing is pinned.
//  6. No panic or runtime.Goexit crosses C.  A panic in a coroutine, a
//     callback or asynch work ends the program as a goroutine's would,
//     with the panicking stack; a Goexit in a coroutine or a callback is
//     reported as an error (WithErrorHandler), and one in asynch work is
//     the error the waiting coroutine gets.
//  7. Ordinary Go blocking inside a coroutine (channels, time.Sleep,
//     sync.Mutex) is legal but stalls the whole loop thread.
//
// Breaking rule 1 or 2 panics with a *MisuseError before the runtime
// would kill the process.  Loop called where it would wait for itself (on
// a loop's thread, in asynch work) returns one; Shutdown there only asks
// the loops to stop.
package eventer
