package configs

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// What the Makefile says, for the tests that hold the unit, the Dockerfile
// and make install to it.

// makeDefault returns the default a variable of the Makefile is given
// ("PREFIX ?= /usr/local").
func makeDefault(t *testing.T, name string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*[:?]?=\s*(.*?)\s*$`)
	m := re.FindStringSubmatch(readFile(t, "Makefile"))
	if m == nil {
		t.Fatalf("Makefile: no %s", name)
	}
	return m[1]
}

// makeRecipe returns the recipe lines of a target.
func makeRecipe(t *testing.T, target string) []string {
	t.Helper()
	var recipe []string
	in := false
	for _, line := range strings.Split(readFile(t, "Makefile"), "\n") {
		switch {
		case strings.HasPrefix(line, target+":"):
			in = true
		case in && strings.HasPrefix(line, "\t"):
			recipe = append(recipe, strings.TrimPrefix(line, "\t"))
		case in:
			return recipe
		}
	}
	if !in {
		t.Fatalf("Makefile: no target %s", target)
	}
	return recipe
}

// goBuildPackages returns the package patterns of a go build command line
// (its arguments that start with "./").
func goBuildPackages(cmdline string) []string {
	var pkgs []string
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "./") {
			pkgs = append(pkgs, f)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

// makeBuild returns the go build line of the build target.
func makeBuild(t *testing.T) string {
	t.Helper()
	for _, line := range makeRecipe(t, "build") {
		if strings.Contains(line, "$(GO) build") {
			return line
		}
	}
	t.Fatal("Makefile: the build target runs no $(GO) build")
	return ""
}

// commands are the directories of cmd/, the binaries make build produces.
func commands(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(root, "cmd", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			names = append(names, filepath.Base(d))
		}
	}
	if len(names) == 0 {
		t.Fatal("no commands under cmd/")
	}
	sort.Strings(names)
	return names
}
