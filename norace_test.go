//go:build !race

package eventer

const raceEnabled = false
