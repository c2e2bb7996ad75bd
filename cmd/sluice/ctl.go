package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluiceproxy/sluice/admin"
)

// sluice ctl wraps the admin API for the terminal. It is a client only:
// everything it can do, curl can do against the same API (docs/admin.md).

const ctlUsage = `Usage:
  sluice ctl [--admin ADDR] [--admin-token-file FILE] COMMAND [ARGS]

Commands:
  status                          every service: queue by class, backends
  events                          the event log, oldest first
  drain   SERVICE BACKEND         send nothing new; what is in flight finishes
  disable SERVICE BACKEND         take a backend out of rotation
  enable  SERVICE BACKEND         put a drained or disabled backend back
  weight  SERVICE BACKEND W       set a backend's relative share (default 1)
  limit   SERVICE BACKEND N       fix a ceiling on a backend's concurrency; 0 lifts it
  add     SERVICE URL             add a backend (until the next reload)
  remove  SERVICE BACKEND         remove a backend (until the next reload)
  reload                          re-apply the configuration file, as SIGHUP does

Flags:
`

// ctlTimeout bounds one call: the admin API answers at once, but for a
// reload, which warms the pools of new backends.
const ctlTimeout = 30 * time.Second

type ctlClient struct {
	base  string
	token string
	http  *http.Client
}

func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("admin", "127.0.0.1:9901", "`address` of the admin listener")
	tokenFile := fs.String("admin-token-file", "", "`file` holding the admin API's bearer token")
	usage := func() {
		fmt.Fprint(stderr, ctlUsage)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, ctlUsage)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "sluice ctl: %v\n", err)
		usage()
		return exitUsage
	}
	c := &ctlClient{base: "http://" + *addr, http: &http.Client{Timeout: ctlTimeout}}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "sluice ctl: %v\n", err)
			return exitFailure
		}
		c.token = strings.TrimSpace(string(b))
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage()
		return exitUsage
	}
	cmd, rest := rest[0], rest[1:]
	want := map[string]int{"status": 0, "events": 0, "reload": 0, "drain": 2, "disable": 2, "enable": 2,
		"add": 2, "remove": 2, "weight": 3, "limit": 3}
	n, ok := want[cmd]
	if !ok {
		fmt.Fprintf(stderr, "sluice ctl: unknown command %q\n", cmd)
		usage()
		return exitUsage
	}
	if len(rest) != n {
		fmt.Fprintf(stderr, "sluice ctl %s: want %d arguments, got %d\n", cmd, n, len(rest))
		usage()
		return exitUsage
	}
	if err := c.do(cmd, rest, stdout); err != nil {
		fmt.Fprintf(stderr, "sluice ctl %s: %v\n", cmd, err)
		return exitFailure
	}
	return exitOK
}

func (c *ctlClient) do(cmd string, args []string, stdout io.Writer) error {
	switch cmd {
	case "status":
		var st admin.Status
		if err := c.call(http.MethodGet, "/api/v1/status", nil, &st); err != nil {
			return err
		}
		printStatus(stdout, st)
		return nil
	case "events":
		var ev admin.Events
		if err := c.call(http.MethodGet, "/api/v1/events", nil, &ev); err != nil {
			return err
		}
		printEvents(stdout, ev)
		return nil
	case "reload":
		return c.change(stdout, "reload", nil)
	}
	ch := admin.Change{Service: args[0], Backend: args[1]}
	switch cmd {
	case "weight":
		w, err := strconv.ParseFloat(args[2], 64)
		if err != nil {
			return fmt.Errorf("weight: want a number, got %q", args[2])
		}
		ch.Weight = &w
	case "limit":
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return fmt.Errorf("limit: want an integer, got %q", args[2])
		}
		ch.Limit = &n
	}
	return c.change(stdout, cmd, &ch)
}

func (c *ctlClient) change(stdout io.Writer, cmd string, ch *admin.Change) error {
	var body io.Reader
	if ch != nil {
		b, err := json.Marshal(ch)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	var res admin.Result
	if err := c.call(http.MethodPost, "/api/v1/"+cmd, body, &res); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// call makes one API call and decodes its answer into out; an error
// answer becomes an error carrying the API's message.
func (c *ctlClient) call(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (%d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	return json.Unmarshal(data, out)
}

// printStatus writes one block per service: the queue by class on one
// line, the admission counters, then a table of its backends.
func printStatus(w io.Writer, st admin.Status) {
	for i, s := range st.Services {
		if i > 0 {
			fmt.Fprintln(w)
		}
		var q []string
		for _, c := range s.Queue {
			q = append(q, fmt.Sprintf("%s %d", c.Class, c.Length))
		}
		var refused []string
		for _, r := range []string{"queue-full", "queue-timeout", "deadline", "tenant-share", "no-backend", "canceled"} {
			if n := s.Refused[r]; n > 0 {
				refused = append(refused, fmt.Sprintf("%s %d", r, n))
			}
		}
		if len(refused) == 0 {
			refused = []string{"none"}
		}
		fmt.Fprintf(w, "service %s   queued: %s   tenants: %d\n", s.Name, strings.Join(q, ", "), s.Tenants)
		fmt.Fprintf(w, "admitted: %d at once, %d after waiting   refused: %s\n",
			s.AdmittedImmediate, s.AdmittedQueued, strings.Join(refused, ", "))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "BACKEND\tSTATE\tMODE\tIN FLIGHT\tLIMIT\tWEIGHT\tLATENCY\tCPU\tCONNS")
		for _, b := range s.Backends {
			state := b.State
			switch {
			case b.Ejected:
				state += " (ejected)"
			case b.Standby:
				state += " (standby)"
			case b.SlowStart:
				state += " (slow start)"
			}
			mode := b.Mode
			if b.FixedLimit > 0 {
				mode += fmt.Sprintf(" (limit %d)", b.FixedLimit)
			}
			cpu := "-"
			if b.AgentCPU != nil {
				cpu = fmt.Sprintf("%.0f%%", *b.AgentCPU*100)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%g\t%s\t%s\t%d/%d\n", b.ID, state, mode, b.Inflight, b.Limit, b.Weight,
				(time.Duration(b.LatencySeconds * float64(time.Second))).Round(10*time.Microsecond), cpu, b.PoolOpen, b.PoolIdle)
		}
		tw.Flush()
	}
}

func printEvents(w io.Writer, ev admin.Events) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tSERVICE\tBACKEND\tREASON")
	for _, e := range ev.Events {
		reason := e.Reason
		if e.Error != "" {
			reason = strings.TrimSpace(reason + " " + e.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Service, e.Backend, reason)
	}
	tw.Flush()
}
