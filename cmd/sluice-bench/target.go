package main

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
)

// The target of "sluice-bench run" can be given as --target URL or as the
// one positional argument (sluice-bench run http://127.0.0.1:8080/), which
// is what someone trying the tool for the first time types. Both at once
// are accepted only when they name the same server: two different URLs
// mean the command line is not what its author thinks, and a load test
// sent to the wrong server is worse than none.

// parseInterleaved parses args with fs, allowing flags after positional
// arguments: the flag package stops at the first argument that is not a
// flag, so "run URL --rate 600" would otherwise leave "--rate 600" as two
// more positional arguments. A bare "--" still ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// resolveTarget decides the target URL from the --target flag (empty when
// not given) and the positional arguments. The error is a usage message.
func resolveTarget(flagTarget string, positional []string) (string, error) {
	switch {
	case len(positional) > 1:
		return "", fmt.Errorf("one target URL at most, got %d arguments: %s", len(positional), quoteAll(positional))
	case len(positional) == 0:
		if flagTarget == "" {
			return "", fmt.Errorf("a target is required: sluice-bench run URL, or --target URL")
		}
		return flagTarget, nil
	}
	arg := positional[0]
	u, err := url.Parse(arg)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("argument %q is not a URL: want http://host:port, e.g. http://127.0.0.1:8080", arg)
	}
	if flagTarget != "" && !sameTarget(flagTarget, arg) {
		return "", fmt.Errorf("--target %s and the argument %s name different targets: give one", flagTarget, arg)
	}
	return arg, nil
}

// sameTarget reports whether two target URLs name the same thing: scheme
// and host compare without regard to case, and a trailing slash is no
// difference (http://h:1 and http://h:1/ are the same base URL).
func sameTarget(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/") && ua.RawQuery == ub.RawQuery
}

func quoteAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(q, " ")
}
