package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// make install puts every command in $(DESTDIR)$(PREFIX)/bin, executable,
// and each installed binary runs.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands: not in -short mode")
	}
	mk := needTool(t, "make")
	tmp := t.TempDir()
	stage := filepath.Join(tmp, "stage")
	// BIN too, so that the test builds outside the source tree.
	cmd := exec.Command(mk, "--no-print-directory", "install",
		"DESTDIR="+stage, "PREFIX=/opt/sluice", "BIN="+filepath.Join(tmp, "build"))
	cmd.Dir = root
	// Under make test, the outer make's flags and jobserver would reach
	// this one through the environment.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "MAKEOVERRIDES" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make install: %s", out)

	bindir := filepath.Join(stage, "opt", "sluice", "bin")
	entries, err := os.ReadDir(bindir)
	require.NoError(t, err)
	var installed []string
	for _, e := range entries {
		installed = append(installed, e.Name())
	}
	sort.Strings(installed)
	require.Equal(t, commands(t), installed, "what make install put in %s", bindir)

	for _, name := range installed {
		bin := filepath.Join(bindir, name)
		fi, err := os.Stat(bin)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), name)
		out, err := exec.Command(bin, "--version").Output()
		require.NoError(t, err, "%s --version", name)
		assert.True(t, strings.HasPrefix(string(out), name+" version "), "%s --version: %q", name, out)
	}
}
