package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatchHelpAndErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{nil, 2, "usage: sluice-bench <command>"},
		{[]string{"--help"}, 0, "scenario"},
		{[]string{"--help"}, 0, "'sluice-bench --version'"},
		{[]string{"--version"}, 0, "sluice-bench version "},
		{[]string{"version"}, 0, ", module "},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"origin", "--help"}, 0, "/_origin/config"},
		{[]string{"origin", "--workers", "-1"}, 2, "Workers must be >= 0, got -1"},
		{[]string{"origin", "--schedule", "10s:color=red"}, 2, `unknown setting "color"`},
		{[]string{"demo", "--help"}, 0, "-sluice path"},
		{[]string{"scenario", "--help"}, 0, "overload|sweep|priority|fairness|qos|all"},
		{[]string{"scenario", "--help"}, 0, "qos-fail, qos-hang, qos-slow, qos-longpoll,\n            qos-standby"},
		{[]string{"origin", "--help"}, 0, "-error-fast"},
		{[]string{"scenario"}, 2, "usage: sluice-bench scenario"},
		{[]string{"scenario", "nope", "--in-process-origin"}, 1, `unknown scenario "nope"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := dispatch(tt.args, &out, &errb)
		all := out.String() + errb.String()
		if code != tt.code || !strings.Contains(all, tt.want) {
			t.Errorf("%q: exit %d, want %d; output lacks %q:\n%s", tt.args, code, tt.code, tt.want, all)
		}
	}
}
