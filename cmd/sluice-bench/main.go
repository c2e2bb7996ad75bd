// Command sluice-bench is Sluice's benchmark kit: a load generator (run), a
// simulated finite-capacity origin (origin), a one-command demo (demo) and
// side-by-side comparisons with HAProxy and nginx (scenario).
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sluiceproxy/sluice/internal/buildinfo"
)

const usage = `usage: sluice-bench <command> [flags]

commands:
  run       generate load against a target and report goodput and latency
  origin    serve a simulated origin with finite capacity
  demo      overload an origin directly and through Sluice, side by side
  scenario  compare Sluice with HAProxy, nginx and no proxy (overload, priority, fairness, all)

Run 'sluice-bench <command> --help' for a command's flags,
'sluice-bench --version' for the version, commit and Go release.
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCommand(rest, stdout, stderr)
	case "origin":
		return originCommand(rest, stdout, stderr)
	case "demo":
		return demoCommand(rest, stdout, stderr)
	case "scenario":
		return scenarioCommand(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, buildinfo.Read().Line("sluice-bench"))
		return 0
	}
	fmt.Fprintf(stderr, "sluice-bench: unknown command %q\n\n%s", cmd, usage)
	return 2
}
