package scheduler

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.txt with the actual output")

// TestScripts runs the data-driven scripts in testdata/: each block is one
// command, a "----" line and the expected output, ended by a blank line.
// Time is a fake clock that only "advance" moves.
//
//	new backends=N [limit=static:N] [discipline=...] [queue_max=N] [queue_timeout=D] [weights=a=2] [min_share=low=0.5]
//	                   (backends are named 0 .. N-1)
//	reconfigure [backends=A,B,...] [same keys as new]
//	                   (the policy and the backend set, in place)
//	arrive ID [class=C] [tenant=NAME] [deadline=D] [exclude=A,B]
//	done ID [outcome=success|failure|ignore] [latency=D]
//	advance D          (moves the clock, then expires what timed out)
//	cancel ID
//	backend NAME [up|down|add|remove] [cap=N] [weight=W]
//	inflight NAME
//	stats
//
// A line that does not parse, or a key the command does not take, fails
// the test: a typo must not turn into a default.
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptState struct {
	s        *Scheduler
	now      time.Duration
	tickets  map[string]Ticket
	waiters  map[string]*Waiter
	names    map[*Waiter]string
	backends map[string]*Backend // every backend a ticket has named
	out      []string
}

func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rewritten strings.Builder
	blocks := strings.Split(strings.TrimRight(string(data), "\n")+"\n", "\n\n")
	st := &scriptState{tickets: map[string]Ticket{}, waiters: map[string]*Waiter{}, names: map[*Waiter]string{}, backends: map[string]*Backend{}}
	for _, blk := range blocks {
		blk = strings.Trim(blk, "\n")
		if blk == "" {
			continue
		}
		cmd, want, _ := strings.Cut(blk, "\n----")
		want = strings.TrimPrefix(want, "\n")
		var comments []string
		var line string
		for l := range strings.SplitSeq(cmd, "\n") {
			if strings.HasPrefix(l, "#") {
				comments = append(comments, l)
			} else {
				line = l
			}
		}
		st.out = nil
		if err := st.exec(line); err != nil {
			var se scriptError
			if errors.As(err, &se) {
				t.Fatalf("%s: %s: %v", path, line, err)
			}
			st.out = append(st.out, "error: "+err.Error())
		}
		got := strings.Join(st.out, "\n")
		if *rewrite {
			for _, c := range comments {
				rewritten.WriteString(c + "\n")
			}
			fmt.Fprintf(&rewritten, "%s\n----\n%s\n\n", line, got)
			continue
		}
		if got != want {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", path, line, got, want)
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(rewritten.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (st *scriptState) at() time.Time { return simEpoch.Add(st.now) }

// scriptError is a line the script runner cannot read: it fails the test
// instead of being printed as an output.
type scriptError struct{ msg string }

func (e scriptError) Error() string { return e.msg }

func scriptErrorf(format string, args ...any) error {
	return scriptError{fmt.Sprintf(format, args...)}
}

// scriptArgs is one line's words: positional ones and key=value ones.
type scriptArgs struct {
	pos  []string
	kv   map[string]string
	errs []error
}

func parseLine(fields []string, keys ...string) *scriptArgs {
	a := &scriptArgs{kv: map[string]string{}}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			a.pos = append(a.pos, f)
		case !slices.Contains(keys, k):
			a.errs = append(a.errs, scriptErrorf("unknown key %q", k))
		default:
			a.kv[k] = v
		}
	}
	return a
}

func (a *scriptArgs) err() error {
	if len(a.errs) > 0 {
		return a.errs[0]
	}
	return nil
}

func (a *scriptArgs) dur(k string) time.Duration {
	v, ok := a.kv[k]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		a.errs = append(a.errs, scriptErrorf("%s: %v", k, err))
	}
	return d
}

func (a *scriptArgs) int(k string) int {
	v, ok := a.kv[k]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		a.errs = append(a.errs, scriptErrorf("%s: %v", k, err))
	}
	return n
}

func (a *scriptArgs) onePos(cmd string) string {
	if len(a.pos) != 1 {
		a.errs = append(a.errs, scriptErrorf("%s takes one name, got %q", cmd, a.pos))
		return ""
	}
	return a.pos[0]
}

var policyKeys = []string{"limit", "discipline", "queue_max", "queue_timeout", "weights", "min_share"}

// policy reads a Config from the policy keys of a line.
func (a *scriptArgs) policy() Config {
	var cfg Config
	if v, ok := a.kv["limit"]; ok {
		if err := cfg.Limit.UnmarshalText([]byte(v)); err != nil {
			a.errs = append(a.errs, scriptErrorf("limit: %v", err))
		}
	}
	if v, ok := a.kv["discipline"]; ok {
		if err := cfg.Discipline.UnmarshalText([]byte(v)); err != nil {
			a.errs = append(a.errs, scriptErrorf("discipline: %v", err))
		}
	}
	cfg.QueueMax = a.int("queue_max")
	cfg.QueueTimeout = a.dur("queue_timeout")
	if v, ok := a.kv["weights"]; ok {
		if err := cfg.TenantWeights.Set(strings.ReplaceAll(v, ";", ",")); err != nil {
			a.errs = append(a.errs, scriptErrorf("weights: %v", err))
		}
	}
	if v, ok := a.kv["min_share"]; ok {
		if err := cfg.ClassMinShare.Set(v); err != nil {
			a.errs = append(a.errs, scriptErrorf("min_share: %v", err))
		}
	}
	return cfg
}

func (st *scriptState) admitted(name string, t Ticket) {
	st.tickets[name] = t
	st.backends[t.Backend.ID()] = t.Backend
}

func (st *scriptState) exec(line string) error {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return scriptErrorf("empty command")
	}
	if st.s == nil && fields[0] != "new" {
		return scriptErrorf("%s before new", fields[0])
	}
	switch fields[0] {
	case "new":
		a := parseLine(fields[1:], append([]string{"backends"}, policyKeys...)...)
		n := a.int("backends")
		cfg := a.policy()
		if err := a.err(); err != nil {
			return err
		}
		s, err := New(cfg)
		if err != nil {
			return err
		}
		for i := range n {
			if _, err := s.AddBackend(strconv.Itoa(i), nil, st.at()); err != nil {
				return err
			}
		}
		s.SetClock(st.at)
		s.OnDecision(func(w *Waiter, t Ticket, err error) {
			name := st.names[w]
			delete(st.names, w)
			delete(st.waiters, name)
			if err == nil {
				st.admitted(name, t)
				st.out = append(st.out, fmt.Sprintf("%s: admitted backend=%s waited=%v", name, t.Backend.ID(), t.Start.Sub(w.Arrived())))
				return
			}
			st.out = append(st.out, fmt.Sprintf("%s: refused %v", name, err))
		})
		st.s = s
		st.out = append(st.out, "ok")
	case "reconfigure":
		a := parseLine(fields[1:], append([]string{"backends"}, policyKeys...)...)
		cfg := a.policy()
		if err := a.err(); err != nil {
			return err
		}
		var specs []BackendSpec
		for id := range strings.SplitSeq(a.kv["backends"], ",") {
			if id != "" {
				specs = append(specs, BackendSpec{ID: id})
			}
		}
		if err := st.s.Reconfigure(cfg, specs, st.at()); err != nil {
			return err
		}
		st.out = append(st.out, "ok")
	case "arrive":
		a := parseLine(fields[1:], "class", "tenant", "deadline", "exclude")
		name := a.onePos("arrive")
		r := Request{Class: Normal}
		if v, ok := a.kv["class"]; ok {
			var known bool
			if r.Class, known = ParseClass(v); !known {
				return scriptErrorf("unknown class %q", v)
			}
		}
		if v, ok := a.kv["tenant"]; ok {
			r.Tenant = TenantKey([]byte(v))
		}
		if _, ok := a.kv["deadline"]; ok {
			r.Deadline = st.at().Add(a.dur("deadline"))
		}
		if v, ok := a.kv["exclude"]; ok {
			for id := range strings.SplitSeq(v, ",") {
				b, ok := st.backends[id]
				if !ok {
					return scriptErrorf("exclude: backend %q has not been seen in a ticket yet", id)
				}
				r.Exclude = append(r.Exclude, b)
			}
		}
		if err := a.err(); err != nil {
			return err
		}
		w := &Waiter{}
		tk, err := st.s.Arrive(&r, w, st.at())
		switch {
		case err != nil:
			st.out = append(st.out, fmt.Sprintf("%s: refused %v", name, err))
		case !w.Queued():
			st.admitted(name, tk)
			st.out = append(st.out, fmt.Sprintf("%s: admitted backend=%s", name, tk.Backend.ID()))
		default:
			st.waiters[name], st.names[w] = w, name
			st.out = append(st.out, fmt.Sprintf("%s: queued (%d waiting)", name, st.s.Queued()))
		}
	case "done":
		a := parseLine(fields[1:], "outcome", "latency")
		name := a.onePos("done")
		latency := a.dur("latency")
		o := Success
		switch v := a.kv["outcome"]; v {
		case "", "success":
		case "failure":
			o = Failure
		case "ignore":
			o = Ignore
		default:
			return scriptErrorf("unknown outcome %q", v)
		}
		if err := a.err(); err != nil {
			return err
		}
		tk, ok := st.tickets[name]
		if !ok {
			return scriptErrorf("no ticket %s", name)
		}
		delete(st.tickets, name)
		st.s.Done(tk, o, latency, st.at())
	case "advance":
		a := parseLine(fields[1:])
		d, err := time.ParseDuration(a.onePos("advance"))
		if err != nil {
			return scriptErrorf("advance: %v", err)
		}
		st.now += d
		st.s.Expire(st.at())
	case "cancel":
		a := parseLine(fields[1:])
		name := a.onePos("cancel")
		if err := a.err(); err != nil {
			return err
		}
		w, ok := st.waiters[name]
		if !ok {
			return scriptErrorf("%s is not waiting", name)
		}
		st.s.Cancel(w)
	case "backend":
		a := parseLine(fields[1:], "cap", "weight")
		if len(a.pos) < 1 || len(a.pos) > 2 {
			return scriptErrorf("backend NAME [up|down|add|remove] [cap=N] [weight=W]")
		}
		id := a.pos[0]
		if err := a.err(); err != nil {
			return err
		}
		var err error
		if len(a.pos) == 2 {
			switch a.pos[1] {
			case "up":
				err = st.s.SetBackendState(id, StateUp, st.at())
			case "down":
				err = st.s.SetBackendState(id, StateDown, st.at())
			case "add":
				_, err = st.s.AddBackend(id, nil, st.at())
			case "remove":
				err = st.s.RemoveBackend(id, st.at())
			default:
				return scriptErrorf("backend: unknown action %q", a.pos[1])
			}
		}
		if err == nil && a.kv["cap"] != "" {
			err = st.s.SetBackendCap(id, a.int("cap"), st.at())
		}
		if err == nil && a.kv["weight"] != "" {
			w, perr := strconv.ParseFloat(a.kv["weight"], 64)
			if perr != nil {
				return scriptErrorf("weight: %v", perr)
			}
			err = st.s.SetBackendWeight(id, w)
		}
		if err := a.err(); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		st.out = append(st.out, "ok")
	case "inflight":
		a := parseLine(fields[1:])
		id := a.onePos("inflight")
		if err := a.err(); err != nil {
			return err
		}
		n, known := st.s.BackendInflight(id)
		st.out = append(st.out, fmt.Sprintf("%s: inflight=%d known=%v", id, n, known))
	case "stats":
		s := st.s.Stats()
		st.out = append(st.out, fmt.Sprintf("queued=%v fast=%d released=%d full=%d timeout=%d deadline=%d share=%d nobackend=%d canceled=%d",
			s.Queued, s.AdmittedFast, s.AdmittedQueued, s.QueueFull, s.QueueTimeout, s.Deadline, s.TenantShare, s.NoBackend, s.Canceled))
		for _, b := range s.Backends {
			st.out = append(st.out, fmt.Sprintf("backend %s: %v inflight=%d limit=%d", b.ID, b.State, b.Inflight, b.Limit))
		}
	default:
		return scriptErrorf("unknown command %q", fields[0])
	}
	return nil
}
