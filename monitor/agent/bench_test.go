package agent

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSampleHost is one sample with default flags.
func BenchmarkSampleHost(b *testing.B) {
	s, err := NewSampler(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Sample(ctx, now.Add(time.Duration(i)*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSampleProcessMissing is one sample while the named process is
// missing: the whole process table is searched each time.
func BenchmarkSampleProcessMissing(b *testing.B) {
	s, err := NewSampler(Config{Processes: []string{"no-such-origin"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Sample(ctx, now.Add(time.Duration(i)*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
