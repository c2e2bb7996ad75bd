package admin

import (
	"flag"
	"fmt"
	"net"
)

// Config is the admin listener. Off unless Listen is set: two gateways on
// one machine, or a test suite starting many, must not fight over a fixed
// port, and an operator who wants the admin API asks for it by address.
type Config struct {
	// Listen is the host:port of the admin listener; "" (the default)
	// turns it off. A loopback address (127.0.0.1:9901, [::1]:9901,
	// localhost:9901) is reachable only from the machine itself; any
	// other address needs TokenFile.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token that the changing calls (drain,
	// enable, weight, reload, ...) must present. Required when Listen is
	// not loopback; when given on loopback it is required there too.
	// Reading (status, metrics, events, the dashboard) needs no token.
	TokenFile string `yaml:"token_file"`
}

// WithDefaults returns c with every default filled in. The admin listener
// has none: it is off, and tokenless only on loopback.
func (c Config) WithDefaults() Config { return c }

// Validate checks c, naming the field at fault.
func (c Config) Validate() error {
	if c.Listen == "" {
		if c.TokenFile != "" {
			return fmt.Errorf("admin.token_file: set without admin.listen")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %q is not host:port: %v", c.Listen, err)
	}
	if !isLoopback(host) && c.TokenFile == "" {
		return fmt.Errorf("admin.listen: %q is not a loopback address: the admin API then needs admin.token_file (--admin-token-file)", c.Listen)
	}
	return nil
}

// Loopback reports whether the listener is reachable only from this
// machine.
func (c Config) Loopback() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	return err == nil && isLoopback(host)
}

// isLoopback: "" and unspecified addresses listen on every interface, so
// they are not loopback; names other than localhost are not trusted to
// resolve to one.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RegisterFlags binds a flag to every field of c, with the field's current
// value as the default, so that flags override a file as the gateway's
// own flags do.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "admin", c.Listen,
		"`address` (host:port) of the admin listener: /metrics, the JSON API, the dashboard;\n"+
			"\"\" turns it off. A non-loopback address needs --admin-token-file")
	fs.StringVar(&c.TokenFile, "admin-token-file", c.TokenFile,
		"`file` holding the bearer token the admin API's changing calls must present")
}
