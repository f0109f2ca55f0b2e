#include "textflag.h"

// func getg() unsafe.Pointer
//
// The running goroutine's g: the runtime keeps it in thread-local storage
// on amd64 (the (TLS) pseudo-register reads it in any package).
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET
