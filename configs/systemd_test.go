package configs

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sluiceproxy/sluice/proxy"
)

var unitPath = filepath.Join("configs", "sluice.service")

// unit is a systemd unit file: section, key, then every value the key is
// given, in order (ExecReload= may be given several times).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s:%d: not key=value: %q", unitPath, i+1, line)
			require.NotEmpty(t, section, "%s:%d: outside a section", unitPath, i+1)
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one returns the only value of a key.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	require.Len(t, v, 1, "%s: [%s] %s", unitPath, section, key)
	return v[0]
}

// argv splits a command line of the unit. The unit quotes nothing, and the
// test keeps it so rather than reimplementing systemd's quoting.
func argv(t *testing.T, cmdline string) []string {
	t.Helper()
	require.NotContains(t, cmdline, `"`, "%s: quoting in %q", unitPath, cmdline)
	require.NotContains(t, cmdline, `'`, "%s: quoting in %q", unitPath, cmdline)
	// Prefixes such as "-" (ignore failure) change nothing here.
	return strings.Fields(strings.TrimLeft(cmdline, "-@:+!"))
}

func loadUnit(t *testing.T) unit {
	return parseUnit(t, readFile(t, unitPath))
}

// ExecStart runs the binary make install installs, on the configuration
// file the image and the docs name.
func TestUnitStartsSluice(t *testing.T) {
	u := loadUnit(t)
	args := argv(t, u.one(t, "Service", "ExecStart"))
	assert.Equal(t, path.Join(makeDefault(t, "PREFIX"), "bin", "sluice"), args[0],
		"ExecStart runs sluice where make install puts it by default")
	assert.Equal(t, configPath, flagValue(args, "config"), "ExecStart: --config")
}

// The flags the unit gives sluice are flags sluice has: the unit's command
// lines, the configuration path replaced by the example, pass
// --check-config.
func TestUnitFlagsAreAccepted(t *testing.T) {
	needBinary(t)
	u := loadUnit(t)
	lines := append([]string{u.one(t, "Service", "ExecStart")}, u["Service"]["ExecReload"]...)
	checked := 0
	for _, line := range lines {
		args := argv(t, line)
		if path.Base(args[0]) != "sluice" {
			continue
		}
		checked++
		cmd := make([]string, 0, len(args)+2)
		for _, a := range args[1:] {
			if a == configPath {
				a = examplePath
			}
			cmd = append(cmd, a)
		}
		if flagValue(args, "check-config") == "" {
			cmd = append(cmd, "--check-config", examplePath)
		}
		out, err := exec.Command(sluiceBin, cmd...).CombinedOutput()
		require.NoError(t, err, "%s: %q as sluice %q: %s", unitPath, line, cmd, out)
		assert.Equal(t, "ok\n", string(out), "%q", line)
	}
	assert.Equal(t, 2, checked, "ExecStart and the validating ExecReload")
}

// A reload is SIGHUP to the main process, which sluice handles as a
// reload; a stop is SIGTERM, with time for the grace period.
func TestUnitSignals(t *testing.T) {
	u := loadUnit(t)
	reloads := u["Service"]["ExecReload"]
	require.NotEmpty(t, reloads)
	kill := argv(t, reloads[len(reloads)-1])
	assert.Equal(t, "kill", path.Base(kill[0]), "the last ExecReload signals sluice")
	assert.Contains(t, [][]string{{"-HUP", "$MAINPID"}, {"-s", "HUP", "$MAINPID"}, {"-HUP", "${MAINPID}"}}, kill[1:])
	for _, r := range reloads[:len(reloads)-1] {
		// Anything before the signal must only check: a failing check
		// stops the reload before the signal.
		assert.Equal(t, "--check-config", argv(t, r)[1], "%q", r)
	}

	assert.Equal(t, "SIGTERM", u.one(t, "Service", "KillSignal"))
	stop := parseTimespan(t, u.one(t, "Service", "TimeoutStopSec"))
	for name, grace := range map[string]time.Duration{
		"the default shutdown_grace": proxy.DefaultShutdownGrace,
		"the example's":              exampleGrace(t),
	} {
		assert.GreaterOrEqual(t, stop, grace+5*time.Second,
			"TimeoutStopSec=%s leaves no margin over %s (%s): systemd would SIGKILL requests still finishing", stop, name, grace)
	}
}

func TestUnitLimitsAndUser(t *testing.T) {
	u := loadUnit(t)
	soft, _, _ := strings.Cut(u.one(t, "Service", "LimitNOFILE"), ":")
	if soft != "infinity" {
		n, err := strconv.Atoi(soft)
		require.NoError(t, err, "LimitNOFILE")
		assert.GreaterOrEqual(t, n, 65536, "LimitNOFILE: each client connection and backend channel is a descriptor")
	}

	s := u["Service"]
	dynamic := len(s["DynamicUser"]) == 1 && s["DynamicUser"][0] == "yes"
	if !dynamic {
		require.Len(t, s["User"], 1, "DynamicUser=yes or User=")
		assert.NotContains(t, []string{"root", "0"}, s["User"][0])
	}
	assert.Equal(t, "yes", u.one(t, "Service", "NoNewPrivileges"))
	assert.Equal(t, "strict", u.one(t, "Service", "ProtectSystem"))
}

// systemd itself reads the unit without a complaint: no misspelt
// directive, no bad value. Only where systemd-analyze is installed.
func TestUnitVerifies(t *testing.T) {
	needBinary(t)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	u := loadUnit(t)
	installed := argv(t, u.one(t, "Service", "ExecStart"))[0]
	// The unit names the installed binary; verify wants it to exist.
	text := strings.ReplaceAll(readFile(t, unitPath), installed, sluiceBin)
	p := filepath.Join(t.TempDir(), "sluice.service")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	assert.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)))
}

// flagValue returns the value given to --name in args ("" if none).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// parseTimespan reads a systemd time span: a number of seconds, or units
// such as "30s", "1min 30s".
func parseTimespan(t *testing.T, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	r := strings.NewReplacer(" ", "", "min", "m", "sec", "s")
	d, err := time.ParseDuration(r.Replace(s))
	require.NoError(t, err, "time span %q", s)
	return d
}

// exampleGrace is the example configuration's effective shutdown_grace:
// the unit's stop timeout must cover what the example suggests.
func exampleGrace(t *testing.T) time.Duration {
	t.Helper()
	var cfg proxy.Config
	require.NoError(t, yaml.Unmarshal([]byte(readFile(t, filepath.Join("configs", "example.yaml"))), &cfg))
	return cfg.WithDefaults().ShutdownGrace
}
