package origin

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesFieldAndValue(t *testing.T) {
	tests := []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Workers = -1 }, "Workers must be >= 0, got -1"},
		{func(c *Config) { c.Service = 0 }, "Service must be > 0, got 0s"},
		{func(c *Config) { c.Dist = "pareto" }, `Dist must be constant, exp, bimodal or lognormal, got "pareto"`},
		{func(c *Config) { c.ErrorRate = 1.5 }, "ErrorRate must be in [0,1], got 1.5"},
		{func(c *Config) { c.HangRate = math.NaN() }, "HangRate must be in [0,1], got NaN"},
		{func(c *Config) { c.ErrorRate, c.ResetRate = 0.6, 0.6 }, "must be <= 1, got 1.2"},
		{func(c *Config) { c.Knee = -2 }, "Knee must be >= 0, got -2"},
	}
	for _, tt := range tests {
		c := Default()
		tt.set(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDistributionsKeepTheMean(t *testing.T) {
	for _, dist := range []string{"constant", "exp", "bimodal", "lognormal"} {
		c := Default()
		c.Dist = dist
		r := rand.New(rand.NewPCG(7, 7))
		const n = 200_000
		var sum float64
		for range n {
			sum += float64(c.sample(r))
		}
		mean := time.Duration(sum / n)
		if mean < 19*time.Millisecond || mean > 21*time.Millisecond {
			t.Errorf("%s: mean %v, want ≈20ms", dist, mean)
		}
	}
}

func TestFaultShares(t *testing.T) {
	c := Default()
	c.ErrorRate, c.HangRate, c.ResetRate, c.SlowBodyRate = 0.1, 0.2, 0.3, 0.1
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[fault]int{}
	const n = 100_000
	for range n {
		counts[c.drawFault(r)]++
	}
	for f, want := range map[fault]float64{faultNone: 0.3, faultError: 0.1, faultHang: 0.2, faultReset: 0.3, faultSlowBody: 0.1} {
		if got := float64(counts[f]) / n; math.Abs(got-want) > 0.01 {
			t.Errorf("fault %d: share %.3f, want %.2f", f, got, want)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := ParseSchedule(" 10s:workers=2 ; 20s:workers=4,error-rate=0.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].At != 10*time.Second || s[1].Settings[1] != [2]string{"error-rate", "0.1"} {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{"10s", "x:workers=1", "10s:workers", "10s:color=red", "10s:workers=two", "2s:workers=1;1s:workers=2", "-1s:workers=1"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"10s:workers=2;20s:workers=4,error-rate=0.1", "", ";", "1s:=", "0s:dist=exp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sched, err := ParseSchedule(s)
		if err != nil {
			return
		}
		var prev time.Duration
		for _, ch := range sched {
			if ch.At < prev || len(ch.Settings) == 0 {
				t.Fatalf("%q: bad schedule %+v", s, sched)
			}
			prev = ch.At
			c := Default()
			for _, kv := range ch.Settings {
				if err := c.Set(kv[0], kv[1]); err != nil {
					t.Fatalf("%q: accepted setting fails: %v", s, err)
				}
			}
		}
	})
}
