package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Unknown stands for a field the toolchain did not record.
const Unknown = "unknown"

// Info is what a binary knows about its own build.
type Info struct {
	Module    string // module path, "github.com/sluiceproxy/sluice"
	Version   string // module version: a tag, a pseudo-version, or "(devel)"
	Commit    string // VCS revision, with "-dirty" when the tree had uncommitted changes
	GoVersion string // "go1.26.8"
	Platform  string // GOOS/GOARCH the binary was built for
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return From(bi)
}

// From extracts Info from build information; nil (a binary built without
// module support) gives every field but the Go version and the platform,
// which the runtime knows, as Unknown.
func From(bi *debug.BuildInfo) Info {
	info := Info{
		Module:    Unknown,
		Version:   Unknown,
		Commit:    Unknown,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi == nil {
		return info
	}
	if bi.Main.Path != "" {
		info.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	var revision, modified, goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if revision != "" {
		info.Commit = revision
		if modified == "true" {
			// The revision alone would name a tree the binary was not
			// built from.
			info.Commit += "-dirty"
		}
	}
	if goos != "" && goarch != "" {
		info.Platform = goos + "/" + goarch
	}
	return info
}

// Line is the --version output of program, one line, every field always
// present and in this order:
//
//	sluice version (devel), module github.com/sluiceproxy/sluice, commit 1f0c2e94d1a3b5c7e9f0a2b4c6d8e0f1a3b5c7d9-dirty, go1.26.8 linux/amd64
func (i Info) Line(program string) string {
	return fmt.Sprintf("%s version %s, module %s, commit %s, %s %s",
		program, i.Version, i.Module, i.Commit, i.GoVersion, i.Platform)
}
