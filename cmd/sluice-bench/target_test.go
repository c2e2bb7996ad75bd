package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolveTarget(t *testing.T) {
	const u = "http://127.0.0.1:8080"
	tests := []struct {
		name       string
		flag       string
		positional []string
		want       string
		err        string // in the error; "" for none
	}{
		{"flag only", u, nil, u, ""},
		{"argument only", "", []string{u + "/"}, u + "/", ""},
		{"both, the same", u, []string{u}, u, ""},
		{"both, a trailing slash apart", u, []string{u + "/"}, u + "/", ""},
		{"both, case apart", "HTTP://LOCALHOST:8080", []string{"http://localhost:8080"}, "http://localhost:8080", ""},
		{"neither", "", nil, "", "a target is required: sluice-bench run URL, or --target URL"},
		{"both, different ports", u, []string{"http://127.0.0.1:8081"},
			"", "--target http://127.0.0.1:8080 and the argument http://127.0.0.1:8081 name different targets"},
		{"both, different paths", u, []string{u + "/api"}, "", "name different targets"},
		{"two arguments", "", []string{u, "http://127.0.0.1:8081"}, "", `one target URL at most, got 2 arguments: "http://127.0.0.1:8080" "http://127.0.0.1:8081"`},
		{"a word", "", []string{"extra"}, "", `argument "extra" is not a URL: want http://host:port`},
		{"host and port without a scheme", "", []string{"127.0.0.1:8080"}, "", `argument "127.0.0.1:8080" is not a URL`},
		{"name and port without a scheme", "", []string{"localhost:8080"}, "", `argument "localhost:8080" is not a URL`},
		{"a non-URL beside the flag", u, []string{"600"}, "", `argument "600" is not a URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveTarget(tt.flag, tt.positional)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// Flags may follow the URL, as people type them.
func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args       []string
		rate       string
		quiet      bool
		positional []string
	}{
		{[]string{"http://h:1"}, "100", false, []string{"http://h:1"}},
		{[]string{"http://h:1", "--rate", "600", "--quiet"}, "600", true, []string{"http://h:1"}},
		{[]string{"--rate", "600", "http://h:1", "--quiet"}, "600", true, []string{"http://h:1"}},
		{[]string{"a", "--quiet", "b"}, "100", true, []string{"a", "b"}},
		// After "--" nothing is a flag.
		{[]string{"--quiet", "--", "http://h:1", "--rate", "600"}, "100", true, []string{"http://h:1", "--rate", "600"}},
		{nil, "100", false, nil},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		rate := fs.String("rate", "100", "")
		quiet := fs.Bool("quiet", false, "")
		positional, err := parseInterleaved(fs, tt.args)
		require.NoError(t, err, "%q", tt.args)
		assert.Equal(t, tt.rate, *rate, "%q: --rate", tt.args)
		assert.Equal(t, tt.quiet, *quiet, "%q: --quiet", tt.args)
		assert.Equal(t, tt.positional, positional, "%q", tt.args)
	}

	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, err := parseInterleaved(fs, []string{"http://h:1", "--nope"})
	assert.ErrorContains(t, err, "flag provided but not defined: -nope")
}

// The positional form runs the same load as --target, flags after the
// URL included.
func TestRunCommandPositionalTarget(t *testing.T) {
	url, seen := startCounting(t)
	var out, errb bytes.Buffer
	code := runCommand([]string{url + "/", "--rate", "50:200ms", "--quiet", "--path", "/p"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	assert.Equal(t, map[string]int{"GET /p ": 10}, seen())
	assert.Contains(t, out.String(), "target      "+url+"/")

	out.Reset()
	errb.Reset()
	code = runCommand([]string{"--target", url, "http://127.0.0.1:1", "--quiet"}, &out, &errb)
	assert.Equal(t, 2, code)
	assert.Contains(t, errb.String(), "name different targets: give one")
	assert.True(t, strings.HasPrefix(errb.String(), "sluice-bench run: "), errb.String())
	assert.Equal(t, map[string]int{"GET /p ": 10}, seen(), "a refused command line sends nothing")
}
