package cgo

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"slices"
	"testing"
	"unsafe"
)

// flatHead builds a flat head as restglue.c's ev_go_head_build writes it.
func flatHead(flags uint32, cl int64, strs []string, hdrs [][2]string, pats []string) []byte {
	ne := binary.NativeEndian
	b := ne.AppendUint32(nil, flags)
	b = ne.AppendUint64(b, uint64(cl))
	b = ne.AppendUint32(b, uint32(len(hdrs)))
	b = ne.AppendUint32(b, uint32(len(pats)))
	put := func(s string) {
		b = ne.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	for _, s := range strs {
		put(s)
	}
	for _, h := range hdrs {
		put(h[0])
		put(h[1])
	}
	for _, p := range pats {
		put(p)
	}
	return b
}

// ParseHead reads every field of a flat head; a head cut short anywhere,
// or with a length that runs past its end, is refused (false), never read
// past its end.
func TestParseHead(t *testing.T) {
	strs := []string{"GET", "/a/b", "HTTP/1.1", "x=1", "\x02\x00\x1f\x90\x7f\x00\x00\x01"}
	hdrs := [][2]string{{"Host", "example"}, {"X-Empty", ""}}
	pats := []string{"b", ""}
	head := flatHead(HeadHTTP11|HeadPayload, 42, strs, hdrs, pats)
	var in RestInfo
	if !ParseHead(head, &in) {
		t.Fatal("refused a whole head")
	}
	if in.Method != "GET" || in.URI != "/a/b" || in.Proto != "HTTP/1.1" || in.Query != "x=1" ||
		in.RemoteRaw != strs[4] || in.Minor != 1 || !in.Payload || in.Chunked || in.ContentLength != 42 {
		t.Fatalf("parsed %+v", in)
	}
	if h := in.Headers(); len(h) != 2 || h[0] != hdrs[0] || h[1] != hdrs[1] {
		t.Fatalf("headers %q", h)
	}
	if len(in.Pats) != 2 || in.Pats[0] != "b" || in.Pats[1] != "" {
		t.Fatalf("pats %q", in.Pats)
	}
	for n := 0; n < len(head); n++ {
		var in RestInfo
		if ParseHead(head[:n:n], &in) {
			t.Fatalf("took a head cut to %d of %d bytes", n, len(head))
		}
	}
	// lengths that lie: no panic, and a lie past the end is refused
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), head...)
		for j := rng.Intn(4); j >= 0; j-- {
			b[rng.Intn(len(b))] = byte(rng.Intn(256))
		}
		var in RestInfo
		if ParseHead(b, &in) {
			_ = in.Headers()
		}
	}
	empty := flatHead(0, -1, []string{"", "", "", "", ""}, nil, nil)
	in = RestInfo{}
	if !ParseHead(empty, &in) || in.Method != "" || in.Minor != 0 || in.ContentLength != -1 {
		t.Fatalf("empty strings: %+v", in)
	}
}

// A flat head over TLS carries what the connection negotiated after the
// captures; a TLS part cut short is refused like the rest of the head.
func TestParseHeadTLS(t *testing.T) {
	ne := binary.NativeEndian
	strs := []string{"GET", "/", "HTTP/1.1", "", ""}
	head := flatHead(HeadHTTP11|HeadTLS, 0, strs, nil, []string{"p"})
	head = ne.AppendUint32(head, 0x0304)
	head = ne.AppendUint32(head, 0x1301)
	head = ne.AppendUint32(head, 1)
	for _, s := range []string{"http/1.1", "example.org", "client", "\x30\x03\x02\x01\x01"} {
		head = ne.AppendUint32(head, uint32(len(s)))
		head = append(head, s...)
	}
	var in RestInfo
	if !ParseHead(head, &in) {
		t.Fatal("refused a whole head")
	}
	tl := in.TLS
	if tl == nil || tl.Version != 0x0304 || tl.Cipher != 0x1301 || !tl.Resumed || tl.ALPN != "http/1.1" ||
		tl.SNI != "example.org" || tl.RemoteCN != "client" || string(tl.PeerDER) != "\x30\x03\x02\x01\x01" ||
		len(in.Pats) != 1 || in.Pats[0] != "p" {
		t.Fatalf("parsed %+v, TLS %+v", in, tl)
	}
	head[len(head)-1] = 0 // the DER is a copy: the head may change afterwards
	if tl.PeerDER[4] != 1 {
		t.Fatal("PeerDER is a view of the head")
	}
	for n := 0; n < len(head); n++ {
		var in RestInfo
		if ParseHead(head[:n:n], &in) {
			t.Fatalf("took a head cut to %d of %d bytes", n, len(head))
		}
	}
	plain := flatHead(HeadHTTP11, 0, strs, nil, nil)
	in = RestInfo{}
	if !ParseHead(plain, &in) || in.TLS != nil {
		t.Fatalf("a plain head: TLS %+v", in.TLS)
	}
}

// A HeadArena's heads are copies that later copies never touch: each keeps
// its bytes while the arena hands out more (from the same chunk and from
// new ones), its capacity is its spare room exactly, and filling that room
// (as a response's first bytes do) changes no other head; a head too big
// to share a chunk gets an allocation of its own, and copying it leaves
// the arena's chunk as it was.
func TestHeadArena(t *testing.T) {
	var a HeadArena
	rng := rand.New(rand.NewSource(1))
	var got [][]byte
	for i := 0; i < 500; i++ {
		n := 1 + rng.Intn(200)
		if i%97 == 0 {
			n = headChunk // never shares a chunk
		}
		src := make([]byte, n)
		rng.Read(src)
		free := len(a.free)
		h := a.copy(unsafe.Pointer(&src[0]), n)
		if len(h) != n || cap(h) != n+HeadSpare {
			t.Fatalf("head %d: len %d cap %d, want %d and %d", i, len(h), cap(h), n, n+HeadSpare)
		}
		if n == headChunk && len(a.free) != free {
			t.Fatalf("head %d of %d bytes took %d bytes of the chunk", i, n, free-len(a.free))
		}
		clear(src) // (the copy is the arena's, not a view of src)
		got = append(got, h)
		spare := h[n:cap(h)]
		for j := range spare {
			spare[j] = 0xAA
		}
	}
	// every head still holds what it was given, after all the copies and
	// spare writes that came after it
	rng = rand.New(rand.NewSource(1))
	for i := range got {
		n := 1 + rng.Intn(200)
		if i%97 == 0 {
			n = headChunk
		}
		src := make([]byte, n)
		rng.Read(src)
		if !bytes.Equal(got[i], src) {
			t.Fatalf("head %d (%d bytes) changed after later copies", i, n)
		}
	}
}

// batchBuf writes a pass's batch as restglue.c's ev_go_batch_add does:
// per request its rule id, session and head length, then the head,
// padded to 8 bytes.
func batchBuf(heads [][]byte) []byte {
	ne := binary.NativeEndian
	var b []byte
	for i, h := range heads {
		b = ne.AppendUint64(b, uint64(1000+i))
		b = ne.AppendUint64(b, uint64(0x5000+8*i))
		b = ne.AppendUint64(b, uint64(len(h)))
		b = append(b, h...)
		for len(b)%8 != 0 {
			b = append(b, 0xEE)
		}
	}
	return b
}

// A pass's batch is copied out of C memory and split into its requests:
// every request keeps its rule, session and head bytes exactly (heads of
// every length 0-40, so each padding), a head's capacity is its length
// (no room to write into the next entry), no head is a view of C's buffer,
// later batches (from the same chunk, from new chunks) change no earlier
// head; the same for batches bigger than half a chunk (their heads copied
// one by one, those above a quarter of a chunk each into an allocation of
// its own, also capped at their length).  Every other batch is pushed
// onto a stack that holds requests already, in reverse order (what
// RestBatch.PushOnto does): the stack's requests stay as they were.
func TestRestBatchSplit(t *testing.T) {
	var a HeadArena
	rng := rand.New(rand.NewSource(7))
	type kept struct {
		head, want []byte
	}
	var all []kept
	for round := 0; round < 200; round++ {
		n := 1 + rng.Intn(16)
		hl := 41
		big := round%23 == 0
		if big {
			n, hl = 16, headChunk/4 // more than half a chunk in all
		}
		heads := make([][]byte, n)
		for i := range heads {
			heads[i] = make([]byte, rng.Intn(hl))
			if big {
				heads[i] = make([]byte, headChunk/8+rng.Intn(hl))
			}
			rng.Read(heads[i])
		}
		src := batchBuf(heads)
		rev := round%2 == 1
		var stack []RestDirect
		if rev {
			stack = make([]RestDirect, round%5, round%5+round%3)
			for i := range stack {
				stack[i] = RestDirect{Ctx: uintptr(i), Rule: uint64(i)}
			}
		}
		below := len(stack)
		got := a.batch(unsafe.Pointer(&src[0]), len(src), n, stack, rev)
		if big != (len(src) > headChunk/2) {
			t.Fatalf("round %d: a batch of %d bytes", round, len(src))
		}
		clear(src) // (C's buffer is reused by the next run)
		if len(got) != below+n {
			t.Fatalf("round %d: %d requests, want %d", round, len(got)-below, n)
		}
		for i := 0; i < below; i++ {
			if got[i].Ctx != uintptr(i) || got[i].Rule != uint64(i) || got[i].Head != nil {
				t.Fatalf("round %d: the stack's request %d changed", round, i)
			}
		}
		got = got[below:]
		if rev {
			slices.Reverse(got)
		}
		for i, r := range got {
			if r.Rule != uint64(1000+i) || r.Ctx != uintptr(0x5000+8*i) ||
				!bytes.Equal(r.Head, heads[i]) || cap(r.Head) != len(heads[i]) {
				t.Fatalf("round %d request %d: rule %d ctx %#x head %d bytes (cap %d), want %d bytes",
					round, i, r.Rule, r.Ctx, len(r.Head), cap(r.Head), len(heads[i]))
			}
			all = append(all, kept{r.Head, heads[i]})
		}
	}
	for i, k := range all {
		if !bytes.Equal(k.head, k.want) {
			t.Fatalf("head %d changed after later batches", i)
		}
	}
	// a length C never writes (beyond the batch) ends the split there
	src := batchBuf([][]byte{[]byte("abc"), []byte("defgh")})
	binary.NativeEndian.PutUint64(src[32+16:], 1<<20)
	if got := a.batch(unsafe.Pointer(&src[0]), len(src), 2, nil, false); len(got) != 1 ||
		string(got[0].Head) != "abc" {
		t.Fatalf("a batch with a bad second length: %d requests", len(got))
	}
	stack := []RestDirect{{Ctx: 9, Rule: 9}}
	if got := a.batch(unsafe.Pointer(&src[0]), len(src), 2, stack, true); len(got) != 2 ||
		got[0].Ctx != 9 || string(got[1].Head) != "abc" || cap(got) < 3 || got[:3][2].Head != nil {
		t.Fatalf("a reversed batch with a bad second length: %d requests", len(got))
	}
}
