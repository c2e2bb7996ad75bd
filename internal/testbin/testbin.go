package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build runs go build of the package in pkgDir (a directory, relative to
// the test's working directory) into a new temporary directory and returns
// the binary's path and a function that removes the directory. The build's
// output goes to stderr.
func Build(pkgDir, name string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "sluice-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = pkgDir
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building %s: %w", name, err)
	}
	return bin, cleanup, nil
}
