package buildinfo

// The real binaries, built as users build them, answer --version with the
// line this package formats.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var moduleRoot = filepath.Join("..", "..")

// commands are the directories of cmd/: every one must answer --version.
func commands(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(moduleRoot, "cmd", "*"))
	require.NoError(t, err)
	var names []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			names = append(names, filepath.Base(d))
		}
	}
	require.NotEmpty(t, names)
	return names
}

// build builds every command into a temporary directory with the extra
// go build flags.
func build(t *testing.T, flags ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the commands: not in -short mode")
	}
	dir := t.TempDir()
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", dir+string(filepath.Separator), "./cmd/...")
	cmd := exec.Command("go", args...)
	cmd.Dir = moduleRoot
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
	return dir
}

func version(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err, "%s --version", bin)
	return string(out)
}

// lineRE matches the whole --version output of name; the commit is
// "unknown" when the build recorded no VCS information (-buildvcs=false,
// a source tarball, a git worktree).
func lineRE(name, module string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(name) + ` version (\S+), module ` + regexp.QuoteMeta(module) +
		`, commit (unknown|[0-9a-f]{40}(?:-dirty)?), (go1\.[0-9]+\S*) ([a-z0-9]+/[a-z0-9]+)\n$`)
}

func TestCommandsPrintVersion(t *testing.T) {
	module := Read().Module
	require.NotEqual(t, Unknown, module)
	dir := build(t)
	for _, name := range commands(t) {
		t.Run(name, func(t *testing.T) {
			out := version(t, filepath.Join(dir, name))
			m := lineRE(name, module).FindStringSubmatch(out)
			require.NotNil(t, m, "%s --version printed %q", name, out)
			assert.NotEqual(t, Unknown, m[1], "module version")
		})
	}
}

// Built from a git checkout with VCS stamping, the commit is the checkout's
// HEAD, marked dirty exactly when git sees changes.
func TestCommandsPrintCommit(t *testing.T) {
	if fi, err := os.Stat(filepath.Join(moduleRoot, ".git")); err != nil || !fi.IsDir() {
		// The go command stamps nothing in a git worktree (.git is a
		// file there) or outside a checkout.
		t.Skip("not a git checkout with a .git directory")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = moduleRoot
		out, err := cmd.Output()
		require.NoError(t, err, "git %v", args)
		return string(out)
	}
	head := strings.TrimSpace(git("rev-parse", "HEAD"))
	want := head
	if strings.TrimSpace(git("status", "--porcelain")) != "" {
		want += "-dirty"
	}
	// The command line overrides a GOFLAGS=-buildvcs=false of the
	// environment.
	dir := build(t, "-buildvcs=true")
	out := version(t, filepath.Join(dir, "sluice"))
	m := lineRE("sluice", Read().Module).FindStringSubmatch(out)
	require.NotNil(t, m, "sluice --version printed %q", out)
	assert.Equal(t, want, m[2])
}
