package scheduler

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
//	arrive ID [class=C] [tenant=NAME] [deadline=D] [exclude=BITS]
//	done ID [outcome=success|failure|ignore] [latency=D]
//	advance D          (moves the clock, then expires what timed out)
//	cancel ID
//	backend I up|down
//	stats
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
	s       *Scheduler
	now     time.Duration
	tickets map[string]Ticket
	waiters map[string]*waiter
	names   map[*waiter]string
	out     []string
}

func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rewritten strings.Builder
	blocks := strings.Split(strings.TrimRight(string(data), "\n")+"\n", "\n\n")
	st := &scriptState{tickets: map[string]Ticket{}, waiters: map[string]*waiter{}, names: map[*waiter]string{}}
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

func (st *scriptState) exec(line string) error {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return fmt.Errorf("empty command")
	}
	args := map[string]string{}
	var pos []string
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	dur := func(k string) time.Duration {
		d, _ := time.ParseDuration(args[k])
		return d
	}
	switch fields[0] {
	case "new":
		var cfg Config
		n, _ := strconv.Atoi(args["backends"])
		if v, ok := args["limit"]; ok {
			if err := cfg.Limit.UnmarshalText([]byte(v)); err != nil {
				return err
			}
		}
		if v, ok := args["discipline"]; ok {
			if err := cfg.Discipline.UnmarshalText([]byte(v)); err != nil {
				return err
			}
		}
		cfg.QueueMax, _ = strconv.Atoi(args["queue_max"])
		cfg.QueueTimeout = dur("queue_timeout")
		if v, ok := args["weights"]; ok {
			if err := cfg.TenantWeights.Set(strings.ReplaceAll(v, ";", ",")); err != nil {
				return err
			}
		}
		if v, ok := args["min_share"]; ok {
			if err := cfg.ClassMinShare.Set(v); err != nil {
				return err
			}
		}
		s, err := newAt(cfg, n, st.at())
		if err != nil {
			return err
		}
		s.clock = st.at
		s.onFinish = func(w *waiter) {
			name := st.names[w]
			delete(st.names, w)
			delete(st.waiters, name)
			if w.state == granted {
				st.tickets[name] = w.ticket
				st.out = append(st.out, fmt.Sprintf("%s: admitted backend=%d waited=%v", name, w.ticket.Backend, w.ticket.Start.Sub(w.arrived)))
				return
			}
			st.out = append(st.out, fmt.Sprintf("%s: refused %v", name, w.err))
		}
		st.s = s
		st.out = append(st.out, "ok")
	case "arrive":
		name := pos[0]
		r := Request{Class: Normal}
		if v, ok := args["class"]; ok {
			r.Class, _ = ParseClass(v)
		}
		if v, ok := args["tenant"]; ok {
			r.Tenant = TenantKey([]byte(v))
		}
		if _, ok := args["deadline"]; ok {
			r.Deadline = st.at().Add(dur("deadline"))
		}
		if v, ok := args["exclude"]; ok {
			r.Exclude, _ = strconv.ParseUint(v, 2, 64)
		}
		w := &waiter{}
		st.s.mu.Lock()
		tk, err := st.s.arriveLocked(&r, st.at(), w)
		st.s.mu.Unlock()
		switch {
		case err != nil:
			st.out = append(st.out, fmt.Sprintf("%s: refused %v", name, err))
		case w.state == granted:
			st.tickets[name] = tk
			st.out = append(st.out, fmt.Sprintf("%s: admitted backend=%d", name, tk.Backend))
		default:
			st.waiters[name], st.names[w] = w, name
			st.out = append(st.out, fmt.Sprintf("%s: queued (%d waiting)", name, st.s.queued))
		}
	case "done":
		name := pos[0]
		tk, ok := st.tickets[name]
		if !ok {
			return fmt.Errorf("no ticket %s", name)
		}
		delete(st.tickets, name)
		o := Success
		switch args["outcome"] {
		case "failure":
			o = Failure
		case "ignore":
			o = Ignore
		}
		st.s.Done(tk, o, dur("latency"), st.at())
	case "advance":
		d, err := time.ParseDuration(pos[0])
		if err != nil {
			return err
		}
		st.now += d
		st.s.Expire(st.at())
	case "cancel":
		w, ok := st.waiters[pos[0]]
		if !ok {
			return fmt.Errorf("%s is not waiting", pos[0])
		}
		st.s.mu.Lock()
		st.s.refuseLocked(w, ErrCanceled, false)
		st.s.mu.Unlock()
	case "backend":
		i, _ := strconv.Atoi(pos[0])
		st.s.setBackendUp(i, pos[1] == "up", st.at())
		st.out = append(st.out, "ok")
	case "stats":
		s := st.s.Stats()
		st.out = append(st.out, fmt.Sprintf("queued=%v fast=%d released=%d full=%d timeout=%d deadline=%d share=%d nobackend=%d canceled=%d",
			s.Queued, s.AdmittedFast, s.AdmittedQueued, s.QueueFull, s.QueueTimeout, s.Deadline, s.TenantShare, s.NoBackend, s.Canceled))
		for i, b := range s.Backends {
			st.out = append(st.out, fmt.Sprintf("backend %d: up=%v inflight=%d limit=%d", i, b.Up, b.Inflight, b.Limit))
		}
	default:
		return fmt.Errorf("unknown command %q", fields[0])
	}
	return nil
}
