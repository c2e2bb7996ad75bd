package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// --version answers before any configuration is read, so that it still
// works when the configuration is what is broken.
func TestRunVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--version"},
		{"--version", "--config", filepath.Join(t.TempDir(), "missing.yaml")},
	} {
		var stdout, stderr strings.Builder
		assert.Equal(t, exitOK, run(args, &stdout, &stderr, nil), "%v: %s", args, stderr.String())
		assert.Regexp(t, `^sluice version \S+, module \S+, commit \S+, go1\.\S+ \S+/\S+\n$`, stdout.String(), "%v", args)
		assert.Empty(t, stderr.String(), "%v", args)
	}
}
