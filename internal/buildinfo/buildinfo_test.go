package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

const rev = "1f0c2e94d1a3b5c7e9f0a2b4c6d8e0f1a3b5c7d9"

func TestFrom(t *testing.T) {
	main := debug.Module{Path: "github.com/sluiceproxy/sluice", Version: "v0.3.0"}
	here := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want Info
	}{
		{"clean tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main, Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"},
		}}, Info{"github.com/sluiceproxy/sluice", "v0.3.0", rev, "go1.26.8", "linux/arm64"}},

		{"uncommitted changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"},
		}}, Info{"github.com/sluiceproxy/sluice", "v0.3.0", rev + "-dirty", "go1.26.8", here}},

		// -buildvcs=false, a source tarball, a container without .git:
		// vcs.modified alone must not invent a commit.
		{"no VCS information", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main:     debug.Module{Path: "github.com/sluiceproxy/sluice", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "true"}},
		}, Info{"github.com/sluiceproxy/sluice", "(devel)", Unknown, "go1.26.8", here}},

		{"no build information", nil, Info{Unknown, Unknown, Unknown, runtime.Version(), here}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, From(tt.bi))
		})
	}
}

// The line has every field, labelled, in a fixed order, whatever is
// unknown: scripts and bug reports read it.
func TestLine(t *testing.T) {
	got := Info{"github.com/sluiceproxy/sluice", "v0.3.0", rev + "-dirty", "go1.26.8", "linux/amd64"}.Line("sluice-agent")
	assert.Equal(t, "sluice-agent version v0.3.0, module github.com/sluiceproxy/sluice, commit "+rev+"-dirty, go1.26.8 linux/amd64", got)

	got = From(nil).Line("sluice")
	assert.Equal(t, "sluice version unknown, module unknown, commit unknown, "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH, got)
}

// The test binary has build information of its own.
func TestReadInTestBinary(t *testing.T) {
	info := Read()
	assert.Regexp(t, `^go1\.`, info.GoVersion)
	assert.NotEmpty(t, info.Commit)
}
