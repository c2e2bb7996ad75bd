package configs

import (
	"encoding/json"
	"net"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// instruction is one instruction of a Dockerfile, continuation lines
// joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
	line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	image, name string
	body        []instruction
}

func parseDockerfile(t *testing.T, text string) []stage {
	t.Helper()
	var stages []stage
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line, start := strings.TrimSpace(lines[i]), i+1
		if line == "" || line[0] == '#' {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue // comments inside a continued instruction are dropped
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start}
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") { // --platform=...
					words = append(words, w)
				}
			}
			require.NotEmpty(t, words, "Dockerfile:%d: FROM what?", start)
			s := stage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			continue
		}
		require.NotEmpty(t, stages, "Dockerfile:%d: %s before FROM", start, in.cmd)
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// last is the last instruction cmd of the stage: the one in force for CMD,
// ENTRYPOINT and USER.
func (s stage) last(cmd string) (instruction, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return instruction{}, false
	}
	return all[len(all)-1], true
}

// execForm reads a JSON-array (exec form) CMD or ENTRYPOINT. The shell
// form would need a shell, which the final image does not have.
func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	require.NoError(t, json.Unmarshal([]byte(in.args), &argv),
		"Dockerfile:%d: %s must be in exec form, [\"...\"]: the image has no shell", in.line, in.cmd)
	return argv
}

func loadDockerfile(t *testing.T) (builder, final stage) {
	t.Helper()
	stages := parseDockerfile(t, readFile(t, "Dockerfile"))
	require.GreaterOrEqual(t, len(stages), 2, "a builder stage and a final one")
	for _, s := range stages[:len(stages)-1] {
		if s.name == "builder" {
			builder = s
		}
	}
	require.NotEmpty(t, builder.image, "no stage FROM ... AS builder before the final one")
	return builder, stages[len(stages)-1]
}

// The builder builds what make build builds, the same way, static.
func TestDockerfileBuilds(t *testing.T) {
	builder, _ := loadDockerfile(t)

	cgoOff := false
	for _, in := range builder.all("ENV") {
		cgoOff = cgoOff || regexp.MustCompile(`(^|\s)CGO_ENABLED[= ]0(\s|$)`).MatchString(in.args)
	}
	var build instruction
	for _, in := range builder.all("RUN") {
		if strings.Contains(in.args, "make build") || strings.Contains(in.args, "go build") {
			build = in
		}
	}
	require.NotEmpty(t, build.args, "the builder runs no make build or go build")
	cgoOff = cgoOff || strings.Contains(build.args, "CGO_ENABLED=0")
	assert.True(t, cgoOff, "CGO_ENABLED=0 in the builder: the final image has no C library")
	assert.Contains(t, build.args, "-trimpath")

	makeLine := makeBuild(t)
	if strings.Contains(build.args, "make build") {
		// The build's flags reach go build only through the variable.
		assert.Contains(t, build.args, "BUILDFLAGS=", "Dockerfile:%d", build.line)
		assert.Contains(t, makeLine, "$(BUILDFLAGS)", "Makefile: build ignores BUILDFLAGS")
	} else {
		assert.Equal(t, goBuildPackages(makeLine), goBuildPackages(build.args),
			"Dockerfile:%d builds other packages than make build", build.line)
	}
	assert.Equal(t, []string{"./cmd/..."}, goBuildPackages(makeLine), "make build: every command")

	// The Go release: go.mod's, so the build neither fails nor fetches
	// another toolchain.
	gomod := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(readFile(t, "go.mod"))
	require.NotNil(t, gomod)
	tag := regexp.MustCompile(`^golang:(\d+\.\d+)`).FindStringSubmatch(builder.image)
	require.NotNil(t, tag, "builder FROM %s: want golang:X.Y...", builder.image)
	assert.Equal(t, gomod[1], tag[1], "the builder's Go release and go.mod's")
}

// The final image holds every command, runs sluice on
// /etc/sluice/sluice.yaml as a user that is not root, and exposes the port
// the configuration it ships listens on.
func TestDockerfileFinalImage(t *testing.T) {
	builder, final := loadDockerfile(t)
	workdir, ok := builder.last("WORKDIR")
	require.True(t, ok, "the builder sets WORKDIR")
	// Where make build, run in the builder's WORKDIR, leaves the binaries.
	binDir := path.Join(workdir.args, makeDefault(t, "BIN"))

	var copied []string
	configCopied := false
	for _, in := range final.all("COPY") {
		words := strings.Fields(in.args)
		if len(words) >= 3 && words[0] == "--from=builder" {
			for _, src := range words[1 : len(words)-1] {
				copied = append(copied, path.Base(src))
				assert.Equal(t, binDir, path.Dir(src), "Dockerfile:%d: %s is not what make build built", in.line, src)
			}
		}
		if slices.Equal(words, []string{"configs/example.yaml", configPath}) {
			configCopied = true
		}
	}
	sort.Strings(copied)
	assert.Equal(t, commands(t), copied, "the final image has every command of cmd/")
	assert.True(t, configCopied, "COPY configs/example.yaml %s", configPath)

	user, ok := final.last("USER")
	require.True(t, ok, "the final stage sets USER")
	uid, _, _ := strings.Cut(user.args, ":")
	assert.NotContains(t, []string{"", "root", "0"}, uid, "Dockerfile:%d", user.line)
	assert.Regexp(t, `^[0-9]+$`, uid, "Dockerfile:%d: a numeric user, which runAsNonRoot can verify", user.line)

	var argv []string
	if in, ok := final.last("ENTRYPOINT"); ok {
		argv = execForm(t, in)
	}
	if in, ok := final.last("CMD"); ok {
		argv = append(argv, execForm(t, in)...)
	}
	require.NotEmpty(t, argv, "the final stage has no CMD or ENTRYPOINT")
	assert.Equal(t, "sluice", path.Base(argv[0]))
	assert.Equal(t, configPath, flagValue(argv, "config"), "the command: --config")

	var cfg struct {
		Listen string `yaml:"listen"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(readFile(t, "configs/example.yaml")), &cfg))
	_, port, err := net.SplitHostPort(cfg.Listen)
	require.NoError(t, err)
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	assert.Contains(t, exposed, port, "EXPOSE the port of the shipped configuration's listen")
}

// .dockerignore keeps .git in the context: without it the binaries carry
// no commit.
func TestDockerignoreKeepsGit(t *testing.T) {
	for _, line := range strings.Split(readFile(t, ".dockerignore"), "\n") {
		p := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "**/"), "/")
		assert.NotEqual(t, ".git", p, ".dockerignore: %q", line)
	}
}
