package conformance

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/acoeventer/eventer"
)

// readMax bounds the bytes a read step asks for (the C driver's too).
const readMax = 1024

// builtins is the Go table of the built-in steps: the counterpart of
// csrc/conformance/eventer_conformance_steps.c, step by step (the listener
// steps are in listener.go).  Steps that the Go API has no counterpart
// for are C's only (scenarios using them say `lang c`): stats,
// asynch_deadline, try_run_asynch, gate, asynch_gated, run_asynch_gated,
// gate_wait, accept_deadline, closure, is_aco, aco_classic, chan_closed.
var builtins = Steps{
	// coroutines and time
	"sleep": {"dur", func(c *Call) (string, error) { return "", c.Co.Sleep(c.Dur(0)) }},
	"yield": {"", func(c *Call) (string, error) { return "", c.Co.Yield() }},
	"park":  {"timeout=dur", func(c *Call) (string, error) { return "", c.Co.Park(c.Timeout()) }},
	"wake": {"co", func(c *Call) (string, error) {
		h, err := c.Coroutine(0)
		if err != nil {
			return "", err
		}
		return "", endedIsESRCH(h.Wake())
	}},
	"cancel": {"co", func(c *Call) (string, error) {
		h, err := c.Coroutine(0)
		if err != nil {
			return "", err
		}
		return "", endedIsESRCH(h.Cancel())
	}},
	"join": {"co timeout=dur", func(c *Call) (string, error) {
		h, err := c.Coroutine(0)
		if err != nil {
			return "", err
		}
		return "", c.Co.Join(h, c.Timeout())
	}},
	// stack=N has no Go counterpart (a goroutine's stack grows); it is
	// checked as C checks it
	"start": {"co stack=int", func(c *Call) (string, error) {
		gc := c.goCo(0)
		if gc == nil {
			return "", syscall.EINVAL
		}
		if _, ok := c.Opt("stack"); ok && (c.optInt("stack") <= 0 || gc.sc.Loop != c.co.sc.Loop) {
			return "", syscall.EINVAL
		}
		return "", c.run.startCo(c, gc)
	}},
	"done": {"co", func(c *Call) (string, error) {
		gc := c.goCo(0)
		if gc == nil {
			return "", syscall.EINVAL
		}
		v := 0
		if h := gc.h.Load(); h != nil {
			select {
			case <-h.Done():
				v = 1
			default:
			}
		}
		return value(v), nil
	}},
	"arg": {"", func(c *Call) (string, error) {
		if c.Co.Arg() != any(c.co) {
			return "wrong arg", nil
		}
		if c.co.h.Load() != c.Co {
			return "wrong self", nil
		}
		return "", nil
	}},

	// asynch work
	"asynch": {"dur queue=obj subqueue=int", func(c *Call) (string, error) {
		q, err := c.asynchQueue()
		if err != nil {
			return "", err
		}
		d := c.Dur(0)
		work := func() { time.Sleep(d) }
		if q == nil {
			return "", c.Co.SimpleAsynch(work)
		}
		return "", c.Co.RunAsynch(q, work)
	}},
	"run_asynch": {"dur queue=obj subqueue=int", func(c *Call) (string, error) {
		q, err := c.asynchQueue()
		if err != nil {
			return "", err
		}
		d := c.Dur(0)
		var ran atomic.Bool
		if err := c.Co.RunAsynch(q, func() { time.Sleep(d); ran.Store(true) }); err != nil {
			return "", err
		}
		if !ran.Load() {
			return "phases: work=0", nil
		}
		return "", nil
	}},
	"jobq": {"new concurrency=int backlog=int", func(c *Call) (string, error) {
		var opts []eventer.JobQueueOption
		if _, ok := c.Opt("concurrency"); ok {
			opts = append(opts, eventer.WithJobConcurrency(c.optInt("concurrency")))
		}
		if _, ok := c.Opt("backlog"); ok {
			opts = append(opts, eventer.WithJobBacklog(c.optInt("backlog")))
		}
		q, err := eventer.NewJobQueue(c.Unique(c.Arg(0)), opts...)
		if err != nil {
			return "", err
		}
		return "", c.setTyped(0, "jobq", q)
	}},

	// sockets
	"socketpair": {"new new", func(c *Call) (string, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		c.SetFd(0, fds[0])
		return "", c.SetFd(1, fds[1])
	}},
	"listen": {"new tcp|unix backlog=int", func(c *Call) (string, error) {
		var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
		domain, network := unix.AF_INET, "tcp"
		if c.Arg(1) == "unix" {
			domain, network = unix.AF_UNIX, "unix"
			sa = &unix.SockaddrUnix{Name: fmt.Sprintf("@acoconform-go-%d-%s", unix.Getpid(), c.Unique(c.Arg(0)))}
		}
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		backlog := 16
		if _, ok := c.Opt("backlog"); ok {
			backlog = c.optInt("backlog")
		}
		if err := unix.Bind(fd, sa); err != nil {
			unix.Close(fd)
			return "", err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
			return "", err
		}
		bound, err := unix.Getsockname(fd)
		if err != nil {
			unix.Close(fd)
			return "", err
		}
		address := ""
		switch a := bound.(type) {
		case *unix.SockaddrInet4:
			address = fmt.Sprintf("127.0.0.1:%d", a.Port)
		case *unix.SockaddrUnix:
			address = a.Name
		}
		c.SetFd(0, fd)
		c.setAddr(0, network, address)
		return "", nil
	}},
	"aco": {"obj", func(c *Call) (string, error) {
		o, err := c.get(0)
		if err != nil {
			return "", err
		}
		var ev *eventer.Event
		switch o.kind {
		case kFd:
			if ev, err = eventer.FdEvent(o.fd); err != nil {
				return "", err
			}
		case kEv:
			ev = o.ev
		default:
			return "", errWrongKind
		}
		ae, err := c.Co.SetEventerAco(ev)
		if err != nil {
			return "", err
		}
		return "", c.SetAcoEvent(0, ae)
	}},
	"connect": {"new obj timeout=dur", func(c *Call) (string, error) {
		network, address, err := c.Addr(1)
		if err != nil {
			return "", err
		}
		ae, err := c.Co.Connect(network, address, c.Timeout())
		if err != nil {
			return "", err
		}
		return "", c.SetAcoEvent(0, ae)
	}},
	"accept": {"obj new timeout=dur", func(c *Call) (string, error) {
		l, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		ev, err := l.Accept(c.Timeout())
		if err != nil {
			return "", err
		}
		return "", c.setEvent(1, ev)
	}},
	"read": {"obj int timeout=dur", func(c *Call) (string, error) {
		if t := c.tlsOf(0); t != nil {
			return tlsRead(c, t)
		}
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		buf := make([]byte, c.readLen())
		n, err := ae.Read(buf, c.Timeout())
		if err != nil {
			return "", err
		}
		return Bytes("data", buf[:n]), nil
	}},
	"write": {"obj text timeout=dur", func(c *Call) (string, error) {
		if t := c.tlsOf(0); t != nil {
			return tlsWrite(c, t)
		}
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		n, err := ae.Write([]byte(c.Arg(1)), c.Timeout())
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("n=%d", n), nil
	}},
	"fill": {"obj timeout=dur", func(c *Call) (string, error) {
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		buf := make([]byte, 65536)
		for {
			n, err := ae.Write(buf, c.Timeout())
			if err != nil {
				return "", err
			}
			if n == 0 {
				return "", syscall.EIO
			}
		}
	}},
	"wait": {"obj read|write timeout=dur", func(c *Call) (string, error) {
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		m := eventer.Write
		if c.Arg(1) == "read" {
			m = eventer.Read
		}
		return "", ae.Wait(m, c.Timeout())
	}},
	"close": {"obj", func(c *Call) (string, error) {
		if t := c.tlsOf(0); t != nil {
			// a close_notify if it can (as C, a close does not fail for
			// want of it: the peer may be gone), then the AcoEvent's Close
			_ = t.conn.CloseWrite()
			return "", t.ae.Close()
		}
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		return "", ae.Close()
	}},
	// the event's default timeouts in C are a net.Conn's deadlines in Go
	"conn_read": {"obj int deadline=dur", func(c *Call) (string, error) {
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		conn := ae.Conn()
		if d, ok := c.OptDur("deadline"); ok {
			conn.SetReadDeadline(time.Now().Add(d))
		}
		buf := make([]byte, c.readLen())
		n, err := conn.Read(buf)
		if err != nil {
			return "", err
		}
		return Bytes("data", buf[:n]), nil
	}},
	"conn_write": {"obj text deadline=dur", func(c *Call) (string, error) {
		ae, err := c.AcoEvent(0)
		if err != nil {
			return "", err
		}
		conn := ae.Conn()
		if d, ok := c.OptDur("deadline"); ok {
			conn.SetWriteDeadline(time.Now().Add(d))
		}
		n, err := conn.Write([]byte(c.Arg(1)))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("n=%d", n), nil
	}},

	// the other end: plain syscalls
	"sys_write": {"obj text", func(c *Call) (string, error) {
		fd, err := c.plainFd(0)
		if err != nil {
			return "", err
		}
		t := []byte(c.Arg(1))
		n, err := unix.SendmsgN(fd, t, nil, nil, unix.MSG_NOSIGNAL)
		if err != nil {
			return "", err
		}
		if n < len(t) {
			return fmt.Sprintf("n=%d", n), nil
		}
		return "", nil
	}},
	"sys_read": {"obj int", func(c *Call) (string, error) {
		fd, err := c.plainFd(0)
		if err != nil {
			return "", err
		}
		buf := make([]byte, c.readLen())
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "eof", nil
		}
		return Bytes("data", buf[:n]), nil
	}},
	"sys_close": {"obj", func(c *Call) (string, error) { return "", c.sysClose(false) }},
	"sys_reset": {"obj", func(c *Call) (string, error) { return "", c.sysClose(true) }},
	"sys_shutdown": {"obj rd|wr|rdwr", func(c *Call) (string, error) {
		fd, err := c.plainFd(0)
		if err != nil {
			return "", err
		}
		how := map[string]int{"rd": unix.SHUT_RD, "wr": unix.SHUT_WR, "rdwr": unix.SHUT_RDWR}[c.Arg(1)]
		return "", unix.Shutdown(fd, how)
	}},
	"sys_connect": {"new obj", func(c *Call) (string, error) {
		network, address, err := c.Addr(1)
		if err != nil {
			return "", err
		}
		var sa unix.Sockaddr
		domain := unix.AF_INET
		if network == "unix" {
			domain, sa = unix.AF_UNIX, &unix.SockaddrUnix{Name: address}
		} else {
			var port int
			fmt.Sscanf(address[strings.LastIndexByte(address, ':')+1:], "%d", &port)
			sa = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
		}
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return "", err
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return "", err
		}
		return "", c.SetFd(0, fd)
	}},
	"sys_accept": {"obj new timeout=dur", func(c *Call) (string, error) {
		fd, err := c.plainFd(0)
		if err != nil {
			return "", err
		}
		ms := 5000
		if d, ok := c.OptDur("timeout"); ok {
			ms = int(d / time.Millisecond)
		}
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, ms)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", syscall.ETIMEDOUT
		}
		nfd, _, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return "", err
		}
		return "", c.SetFd(1, nfd)
	}},

	// sync objects
	"sem": {"new int", func(c *Call) (string, error) {
		s, err := eventer.NewSem(c.Int(1))
		if err != nil {
			return "", err
		}
		return "", c.setTyped(0, "sem", s)
	}},
	"sem_wait": {"obj timeout=dur", func(c *Call) (string, error) {
		return withObj(c, "sem", func(s *eventer.Sem) error { return s.Wait(c.Co, c.Timeout()) })
	}},
	"sem_trywait": {"obj", func(c *Call) (string, error) {
		return withObj(c, "sem", func(s *eventer.Sem) error { return s.TryWait() })
	}},
	"sem_post": {"obj", func(c *Call) (string, error) {
		return withObj(c, "sem", func(s *eventer.Sem) error { return s.Post() })
	}},
	"sem_value": {"obj", func(c *Call) (string, error) {
		return valueOf(c, "sem", func(s *eventer.Sem) int { return s.Value() })
	}},
	"sem_free": {"obj", func(c *Call) (string, error) {
		return freeObj(c, "sem", func(s *eventer.Sem) error { return s.Close() })
	}},
	"mutex": {"new", func(c *Call) (string, error) {
		m, err := eventer.NewMutex()
		if err != nil {
			return "", err
		}
		return "", c.setTyped(0, "mutex", m)
	}},
	"lock": {"obj timeout=dur", func(c *Call) (string, error) {
		return withObj(c, "mutex", func(m *eventer.Mutex) error { return m.Lock(c.Co, c.Timeout()) })
	}},
	"trylock": {"obj", func(c *Call) (string, error) {
		return withObj(c, "mutex", func(m *eventer.Mutex) error {
			// Go's TryLock reports C's EBUSY as ErrWouldBlock
			if err := m.TryLock(c.Co); err != nil {
				if ErrName(err) == "EAGAIN" {
					return syscall.EBUSY
				}
				return err
			}
			return nil
		})
	}},
	"unlock": {"obj", func(c *Call) (string, error) {
		return withObj(c, "mutex", func(m *eventer.Mutex) error { return m.Unlock(c.Co) })
	}},
	"locked": {"obj", func(c *Call) (string, error) {
		return valueOf(c, "mutex", func(m *eventer.Mutex) int {
			if m.Locked() {
				return 1
			}
			return 0
		})
	}},
	"mutex_free": {"obj", func(c *Call) (string, error) {
		return freeObj(c, "mutex", func(m *eventer.Mutex) error { return m.Close() })
	}},
	"wg": {"new", func(c *Call) (string, error) {
		w, err := eventer.NewWaitGroup()
		if err != nil {
			return "", err
		}
		return "", c.setTyped(0, "wg", w)
	}},
	"wg_add": {"obj int", func(c *Call) (string, error) {
		return withObj(c, "wg", func(w *eventer.WaitGroup) error { return w.Add(c.Int(1)) })
	}},
	"wg_done": {"obj", func(c *Call) (string, error) {
		return withObj(c, "wg", func(w *eventer.WaitGroup) error { return w.Done() })
	}},
	"wg_wait": {"obj timeout=dur", func(c *Call) (string, error) {
		return withObj(c, "wg", func(w *eventer.WaitGroup) error { return w.Wait(c.Co, c.Timeout()) })
	}},
	"wg_count": {"obj", func(c *Call) (string, error) {
		return valueOf(c, "wg", func(w *eventer.WaitGroup) int { return w.Count() })
	}},
	"wg_free": {"obj", func(c *Call) (string, error) {
		return freeObj(c, "wg", func(w *eventer.WaitGroup) error { return w.Close() })
	}},
	"chan": {"new int int", func(c *Call) (string, error) {
		if c.Int(1) < 1 || c.Int(2) < 1 {
			return "", syscall.EINVAL
		}
		ch, err := eventer.NewChan(c.Int(1), c.Int(2))
		if err != nil {
			return "", err
		}
		return "", c.setTyped(0, "chan", &goChan{ch, c.Int(1)})
	}},
	"send": {"obj text timeout=dur", func(c *Call) (string, error) {
		return withObj(c, "chan", func(ch *goChan) error {
			e, err := ch.elem(c.Arg(1))
			if err != nil {
				return err
			}
			return ch.Send(c.Co, e, c.Timeout())
		})
	}},
	"trysend": {"obj text", func(c *Call) (string, error) {
		return withObj(c, "chan", func(ch *goChan) error {
			e, err := ch.elem(c.Arg(1))
			if err != nil {
				return err
			}
			return ch.TrySend(e)
		})
	}},
	"recv": {"obj timeout=dur", func(c *Call) (string, error) {
		return recvObj(c, func(ch *goChan, e []byte) error { return ch.Recv(c.Co, e, c.Timeout()) })
	}},
	"tryrecv": {"obj", func(c *Call) (string, error) {
		return recvObj(c, func(ch *goChan, e []byte) error { return ch.TryRecv(e) })
	}},
	"chan_close": {"obj", func(c *Call) (string, error) {
		return withObj(c, "chan", func(ch *goChan) error { return ch.CloseSend() })
	}},
	"chan_len": {"obj", func(c *Call) (string, error) {
		return valueOf(c, "chan", func(ch *goChan) int { return ch.Len() })
	}},
	"chan_cap": {"obj", func(c *Call) (string, error) {
		return valueOf(c, "chan", func(ch *goChan) int { return ch.Cap() })
	}},
	"chan_free": {"obj", func(c *Call) (string, error) {
		return freeObj(c, "chan", func(ch *goChan) error { return ch.Close() })
	}},
}

// BuiltinSteps is a copy of the Go table of the built-in steps.
func BuiltinSteps() Steps {
	out := Steps{}
	for k, v := range builtins {
		out[k] = v
	}
	return out
}

func value(v int) string { return fmt.Sprintf("value=%d", v) }

// endedIsESRCH: Go's Wake and Cancel of an ended coroutine fail with an
// error of their own; C's with ESRCH.
func endedIsESRCH(err error) error {
	if err != nil {
		return syscall.ESRCH
	}
	return nil
}

func (c *Call) optInt(key string) int {
	v, _ := c.Opt(key)
	var n int
	fmt.Sscan(v, &n)
	return n
}

func (c *Call) readLen() int { return max(1, min(c.Int(1), readMax)) }

// queue is the queue= option's job queue (nil: the default queue).
func (c *Call) queue() (*eventer.JobQueue, error) {
	i := c.OptArg("queue")
	if i < 0 {
		return nil, nil
	}
	v, err := c.typed(i, "jobq")
	if err != nil {
		return nil, err
	}
	return v.(*eventer.JobQueue), nil
}

// asynchQueue is the queue the asynch steps' options name: queue=Q (the
// default queue without it) and subqueue=N; nil for neither.
func (c *Call) asynchQueue() (*eventer.JobQueue, error) {
	q, err := c.queue()
	if err != nil {
		return nil, err
	}
	sq, ok := c.Opt("subqueue")
	if !ok {
		return q, nil
	}
	if q == nil {
		if q, err = eventer.NewJobQueue("default_queue"); err != nil {
			return nil, err
		}
	}
	var id uint64
	fmt.Sscan(sq, &id)
	return q.Subqueue(id), nil
}

// plainFd is the fd of a plain socket object (not an AcoEvent).
func (c *Call) plainFd(i int) (int, error) {
	o, err := c.get(i)
	if err != nil {
		return -1, err
	}
	switch o.kind {
	case kFd:
		return o.fd, nil
	case kEv:
		return o.ev.Fd(), nil
	}
	return -1, errWrongKind
}

func (c *Call) sysClose(reset bool) error {
	o, err := c.get(0)
	if err != nil {
		return err
	}
	if o.kind != kFd && o.kind != kEv {
		return errWrongKind
	}
	fd := o.fd
	if o.kind == kEv {
		fd = o.ev.Fd()
	}
	if reset {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return err
		}
	}
	c.Forget(0)
	if o.kind == kEv {
		return o.ev.Close()
	}
	return unix.Close(fd)
}

func withObj[T any](c *Call, typ string, fn func(T) error) (string, error) {
	v, err := c.typed(0, typ)
	if err != nil {
		return "", err
	}
	return "", fn(v.(T))
}

func valueOf[T any](c *Call, typ string, fn func(T) int) (string, error) {
	v, err := c.typed(0, typ)
	if err != nil {
		return "", err
	}
	return value(fn(v.(T))), nil
}

// freeObj: a *_free step; the scenario forgets the object when it
// succeeds.
func freeObj[T any](c *Call, typ string, fn func(T) error) (string, error) {
	v, err := c.typed(0, typ)
	if err != nil {
		return "", err
	}
	if err := fn(v.(T)); err != nil {
		return "", err
	}
	return "", c.Forget(0)
}

// goChan is a channel and its element size.
type goChan struct {
	*eventer.Chan
	size int
}

// elem is the text padded with NULs to the element size (EINVAL when
// longer), as the C step makes it.
func (ch *goChan) elem(t string) ([]byte, error) {
	if len(t) > ch.size {
		return nil, syscall.EINVAL
	}
	e := make([]byte, ch.size)
	copy(e, t)
	return e, nil
}

func recvObj(c *Call, fn func(ch *goChan, e []byte) error) (string, error) {
	v, err := c.typed(0, "chan")
	if err != nil {
		return "", err
	}
	ch := v.(*goChan)
	e := make([]byte, ch.size)
	if err := fn(ch, e); err != nil {
		return "", err
	}
	return Bytes("data", bytes.TrimRight(e, "\x00")), nil
}
