// The seed's "Starting a simple co-routine", in Go: a coroutine that
// sleeps in a blocking style and logs when it wakes up, while a classic
// timer keeps ticking on the same loop thread.
//
//	go run ./examples/go/simple_coroutine
package main

import (
	"log"
	"time"

	"github.com/acoeventer/eventer"
)

func myCoroutine(co *eventer.Co) {
	sleepTime := co.Arg().(time.Duration)
	for i := 0; i < 3; i++ {
		co.Sleep(sleepTime)
		log.Println("Waking up to do something")
	}
	eventer.Shutdown() // only asks: we are on a loop
}

func main() {
	if err := eventer.Init(eventer.WithConcurrency(1)); err != nil {
		log.Fatal(err)
	}
	if _, err := eventer.AcoStart(myCoroutine, 2*time.Second); err != nil {
		log.Fatal(err)
	}
	// a classic timer that adds the next one until the loop stops
	var tick eventer.Callback
	tick = func(e *eventer.Event, m eventer.Mask, now time.Time) eventer.Mask {
		log.Println("a classic timer on the same loop")
		eventer.AddIn(500*time.Millisecond, tick)
		return 0
	}
	if _, err := eventer.AddIn(500*time.Millisecond, tick); err != nil {
		log.Fatal(err)
	}
	if err := eventer.Loop(); err != nil {
		log.Fatal(err)
	}
}
