package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSchedule(t *testing.T) {
	tests := []struct {
		in      string
		want    Schedule
		wantErr string
	}{
		{in: "600", want: Schedule{{600, 600, 0}}},
		{in: "600/s", want: Schedule{{600, 600, 0}}},
		{in: "200:10s,600:20s,200:10s", want: Schedule{{200, 200, 10 * time.Second}, {600, 600, 20 * time.Second}, {200, 200, 10 * time.Second}}},
		{in: " 0-1000:30s , 1000:1m ", want: Schedule{{0, 1000, 30 * time.Second}, {1000, 1000, time.Minute}}},
		{in: "2.5:500ms", want: Schedule{{2.5, 2.5, 500 * time.Millisecond}}},
		{in: "0:2s,10:1s", want: Schedule{{0, 0, 2 * time.Second}, {10, 10, time.Second}}},
		{in: "", wantErr: "empty"},
		{in: "abc", wantErr: "bad rate"},
		{in: "-5", wantErr: "negative"},
		{in: "100:0s", wantErr: "positive"},
		{in: "100:xs", wantErr: "bad duration"},
		{in: "100,200:1s", wantErr: "needs a duration"},
		{in: "100-200", wantErr: "needs a duration"},
		{in: "1e12:1s", wantErr: "out of range"},
		{in: "NaN:1s", wantErr: "out of range"},
		{in: "100-:1s", wantErr: "bad rate"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSchedule(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			// String is the inverse of ParseSchedule.
			again, err := ParseSchedule(got.String())
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestParseClass(t *testing.T) {
	tests := []struct {
		in      string
		want    Class
		wantErr string
	}{
		{in: "name=crit,share=0.2,path=/x,header=X-Priority:critical", want: Class{
			Name: "crit", Share: 0.2, Path: "/x", Headers: map[string]string{"X-Priority": "critical"}}},
		{in: "name=bulk,method=post,path=/up?a=1,priority=low,tenant=acme,body=hello,header=X-A: b:c", want: Class{
			Name: "bulk", Share: 1, Method: "POST", Path: "/up?a=1", Body: []byte("hello"),
			Headers: map[string]string{"X-Priority": "low", "X-Tenant": "acme", "X-A": "b:c"}}},
		{in: "path=/", want: Class{Share: 1, Path: "/"}},
		{in: "", wantErr: "empty"},
		{in: "name", wantErr: "not key=value"},
		{in: "colour=red", wantErr: "unknown key"},
		{in: "share=-1", wantErr: "bad share"},
		{in: "share=x", wantErr: "bad share"},
		{in: "path=x", wantErr: "must start with /"},
		{in: "path=/a b", wantErr: "invalid character"},
		{in: "header=nocolon", wantErr: "not K:V"},
		{in: "header=Host:x", wantErr: "set by the load generator"},
		{in: "header=Content-Length:5", wantErr: "set by the load generator"},
		{in: "header=Bad Name:x", wantErr: "invalid character"},
		{in: "method=G T", wantErr: "bad method"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseClass(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestReadTargets(t *testing.T) {
	paths, method, err := ReadTargets(strings.NewReader("# comment\n/a\n\n  /b?x=1  \n"))
	require.NoError(t, err)
	require.Equal(t, []string{"/a", "/b?x=1"}, paths)
	require.Empty(t, method)

	paths, method, err = ReadTargets(strings.NewReader("post /a\nPOST /b\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"/a", "/b"}, paths)
	require.Equal(t, "POST", method)

	_, _, err = ReadTargets(strings.NewReader("GET /a\nPOST /b\n"))
	require.ErrorContains(t, err, "line 2")
	_, _, err = ReadTargets(strings.NewReader("a\n"))
	require.ErrorContains(t, err, "line 1")
	_, _, err = ReadTargets(strings.NewReader("\n# only\n"))
	require.ErrorContains(t, err, "no paths")
}

func TestArrivals(t *testing.T) {
	count := func(spec string, poisson bool) (int, []int64) {
		sch, err := ParseSchedule(spec)
		require.NoError(t, err)
		a := newArrivals(sch, poisson, newRand(7))
		var ts []int64
		last := int64(-1)
		for {
			at, ok := a.next()
			if !ok {
				break
			}
			require.GreaterOrEqual(t, at, last, "arrivals in order")
			last = at
			ts = append(ts, at)
		}
		return len(ts), ts
	}
	n, ts := count("200:1s", false)
	require.Equal(t, 200, n)
	require.Equal(t, int64(5*time.Millisecond), ts[1]-ts[0], "constant spacing")

	n, _ = count("100:1s,0:1s,300:1s", false)
	require.Equal(t, 400, n)

	// A ramp from 0 to 100/s over 2s holds 100 arrivals, three quarters of
	// them in the second half.
	n, ts = count("0-100:2s", false)
	require.Equal(t, 100, n)
	late := 0
	for _, at := range ts {
		if at >= int64(time.Second) {
			late++
		}
	}
	require.Equal(t, 75, late)

	// Poisson: the count is random, the mean is the rate (sd = sqrt(10000)).
	n, _ = count("10000:1s", true)
	require.InDelta(t, 10000, n, 500)
	n, ts = count("0-2000:2s", true)
	require.InDelta(t, 2000, n, 250)
	require.Less(t, ts[len(ts)-1], int64(2*time.Second))
}

func TestValidate(t *testing.T) {
	ok := Config{Target: "http://127.0.0.1:1", Rate: Schedule{{10, 10, time.Second}}}
	require.NoError(t, ok.Validate())
	tests := []struct {
		name    string
		mod     func(c *Config)
		wantErr string
	}{
		{"no target", func(c *Config) { c.Target = "" }, "target: required"},
		{"https", func(c *Config) { c.Target = "https://127.0.0.1:1" }, "scheme must be http"},
		{"path in target", func(c *Config) { c.Target = "http://127.0.0.1:1/x" }, "not in the target"},
		{"no rate", func(c *Config) { c.Rate = nil }, "rate: required"},
		{"no duration", func(c *Config) { c.Rate = Schedule{{10, 10, 0}} }, "set duration"},
		{"conflict", func(c *Config) { c.Duration = 3 * time.Second }, "conflicts"},
		{"closed no duration", func(c *Config) { c.Conns = 2 }, "needs a positive duration"},
		{"neg conns", func(c *Config) { c.Conns = -1 }, "conns: -1"},
		{"neg timeout", func(c *Config) { c.Timeout = -1 }, "timeout"},
		{"neg after", func(c *Config) { c.After = -time.Second }, "after: -1s"},
		{"zero shares", func(c *Config) { c.Mix = []Class{{Name: "a"}} }, "shares sum to 0"},
		{"bad target path", func(c *Config) { c.Targets = []string{"x"} }, "targets: entry 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			require.ErrorContains(t, c.Validate(), tt.wantErr)
		})
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"600", "200:10s,600:20s,200:10s", "0-1000:30s", "1e3/s:1m", "-", ":", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sch, err := ParseSchedule(s)
		if err != nil {
			return
		}
		for _, st := range sch {
			if !(st.From >= 0 && st.To >= 0 && st.From <= maxRate && st.To <= maxRate) || st.Dur < 0 {
				t.Fatalf("%q parsed to invalid step %+v", s, st)
			}
		}
		again, err := ParseSchedule(sch.String())
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", s, sch.String(), err)
		}
		if again.String() != sch.String() {
			t.Fatalf("%q: round trip %q != %q", s, again.String(), sch.String())
		}
	})
}

func FuzzParseClass(f *testing.F) {
	for _, s := range []string{"name=crit,share=0.2,path=/x,header=X-Priority:critical", "method=POST,body=x", "header=:", "share=NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClass(s)
		if err != nil {
			return
		}
		if !(c.Share >= 0) {
			t.Fatalf("%q: share %v", s, c.Share)
		}
		if err := c.validate(); err != nil {
			t.Fatalf("%q parsed but does not validate: %v", s, err)
		}
		// Whatever parses must make a well-formed request line and headers.
		pc := prepareClass(c, "127.0.0.1")
		req := string(pc.appendRequest(nil, nil))
		head, _, ok := strings.Cut(req, "\r\n\r\n")
		if !ok || strings.ContainsAny(head, "\x00\n\r"[:1]) {
			t.Fatalf("%q: malformed request %q", s, req)
		}
		for _, line := range strings.Split(head, "\r\n") {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("%q: header injection in %q", s, req)
			}
		}
	})
}
