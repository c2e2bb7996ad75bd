package scheduler

import (
	"strconv"
	"testing"
	"time"
)

// newTestScheduler is a scheduler with n backends named "0", "1", ...
func newTestScheduler(tb testing.TB, cfg Config, n int, now time.Time) *Scheduler {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := s.AddBackend(strconv.Itoa(i), nil, now); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// setUp marks backend id up or down.
func setUp(tb testing.TB, s *Scheduler, id string, up bool, now time.Time) {
	tb.Helper()
	st := StateDown
	if up {
		st = StateUp
	}
	if err := s.SetBackendState(id, st, now); err != nil {
		tb.Fatal(err)
	}
}
