// Package configs holds no code: its tests check the files that deploy
// Sluice (the systemd unit here, the Dockerfile and make install at the
// root) against the code they start, so that a flag renamed, a command
// added or a grace period lengthened fails a test instead of a
// deployment.
package configs

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluiceproxy/sluice/internal/testbin"
)

var root = ".."

// sluiceBin is the sluice binary built by TestMain; empty in -short mode.
var sluiceBin string

func TestMain(m *testing.M) {
	flag.Parse()
	cleanup := func() {}
	if !testing.Short() {
		var err error
		if sluiceBin, cleanup, err = testbin.Build(filepath.Join(root, "cmd", "sluice"), "sluice"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if sluiceBin == "" {
		t.Skip("runs the sluice binary: not in -short mode")
	}
}

// needTool skips a test when a program is not installed, except under
// CI=true, where a missing tool is a broken installation.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// examplePath is the example configuration, which the Dockerfile installs
// and against which the unit's flags are checked.
var examplePath = filepath.Join(root, "configs", "example.yaml")

// configPath is where both the unit and the image expect the configuration.
const configPath = "/etc/sluice/sluice.yaml"
