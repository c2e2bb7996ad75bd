package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a child process started by a scenario. Each child runs in its own
// process group and gets SIGKILL if this process dies first (Pdeathsig), so
// nothing outlives a benchmark, even one killed with SIGKILL.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; read after done
}

// startProc runs argv with its output in dir/name.log.
func startProc(name, dir string, argv []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop() {
	if p == nil {
		return
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that ignored the group's SIGTERM (nginx workers exit with
	// their master, but be sure) go now.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of the
// call. Another process could take it before the child binds it; the
// readiness check then fails loudly instead of measuring the wrong thing.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListening waits until addr accepts TCP connections, the process exits
// or ctx/timeout ends. Polling is the only portable way to learn that
// another process has bound a port.
func waitListening(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited before listening on %s (%v):\n%s", p.name, addr, p.err, p.tail())
			default:
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("nothing listening on %s after %s", addr, timeout)
			if p != nil {
				msg = fmt.Sprintf("%s: %s:\n%s", p.name, msg, p.tail())
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// httpProbe sends one GET and reads the status line: a proxy that accepts
// connections but cannot reach its backend is not ready.
func httpProbe(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET /_probe HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	if !strings.HasPrefix(string(buf), "HTTP/1.") {
		return fmt.Errorf("probe %s: not HTTP: %q", addr, buf)
	}
	if buf[9] != '2' {
		return fmt.Errorf("probe %s: status %s", addr, buf[9:12])
	}
	return nil
}

// LookBinary finds a peer's binary: an explicit path must exist; a bare
// name is looked up in PATH and then in the sbin directories Debian puts
// haproxy and nginx in (not always on a user's PATH).
func LookBinary(name string) (string, bool) {
	if strings.ContainsRune(name, '/') {
		if st, err := os.Stat(name); err == nil && !st.IsDir() {
			return name, true
		}
		return "", false
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}
