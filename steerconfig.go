package georoute

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/coredns/caddy"
)

// steerConfig is the steering part of a georoute block as read: what
// override, overrides, state, admin and min_up say. Files are opened and
// checked once the whole block is read (buildSteering).
type steerConfig struct {
	overrideLines []overrideLine
	overridesPath string
	statePath     string
	// overridesLine and stateLine are where those were set, for errors
	// about the files.
	overridesLine, stateLine int
	admin                    *adminConfig
	// memoryKey names the server block's drains in memory, without state.
	memoryKey string
	// minUp (default 1) is how many pops a drain must leave neither down
	// nor drained; minUpLine is where it was set, for errors.
	minUp     int
	minUpLine int
}

// adminConfig is `admin ADDRESS [TOKEN-FILE]`.
type adminConfig struct {
	addr string
	// token is the SHA-256 of the token file's content; nil without one.
	token []byte
}

func defaultSteerConfig() steerConfig { return steerConfig{minUp: 1} }

// parseOverrideProperty records `override CIDR POP...`; its pops are
// checked once the block is read, since they may be declared below it.
func (s *steerConfig) parseOverrideProperty(c *caddy.Controller, args []string) error {
	if len(args) < 2 {
		return c.Err("override needs CIDR POP...; expected e.g. 192.0.2.0/24 lhr nyc")
	}
	s.overrideLines = append(s.overrideLines, overrideLine{args: args, file: c.File(), line: c.Line()})
	return nil
}

// parsePathProperty reads `overrides PATH` and `state PATH`; relative
// paths are joined to the server's root, as db's are.
func (s *steerConfig) parsePathProperty(c *caddy.Controller, p *blockParser, prop string, args []string) error {
	if len(args) != 1 {
		return c.ArgErr()
	}
	if prop == "state" {
		s.statePath, s.stateLine = p.path(args[0]), c.Line()
	} else {
		s.overridesPath, s.overridesLine = p.path(args[0]), c.Line()
	}
	return nil
}

// parseMinUp reads `min_up N`; whether N pops exist is checked once the
// block is read.
func (s *steerConfig) parseMinUp(c *caddy.Controller, args []string) error {
	if len(args) != 1 {
		return c.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return c.Errf("min_up %q; expected a whole number of at least 0", args[0])
	}
	s.minUp, s.minUpLine = n, c.Line()
	return nil
}

// parseAdmin reads `admin ADDRESS [TOKEN-FILE]`. Without a token the
// endpoint, which can drain every pop, must not be reachable from other
// machines: ADDRESS must then be loopback.
func parseAdmin(c *caddy.Controller, args []string, path func(string) string) (*adminConfig, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, c.Err("admin needs ADDRESS [TOKEN-FILE]; expected e.g. admin 127.0.0.1:8182")
	}
	host, port, err := net.SplitHostPort(args[0])
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 {
		return nil, c.Errf("admin address %q; expected HOST:PORT such as 127.0.0.1:8182", args[0])
	}
	a := &adminConfig{addr: args[0]}
	if len(args) == 1 {
		if !loopbackHost(host) {
			return nil, c.Errf("admin address %q is not loopback and has no TOKEN-FILE; expected a loopback address such as 127.0.0.1:8182, or admin ADDRESS TOKEN-FILE", args[0])
		}
		return a, nil
	}
	token, err := readToken(path(args[1]))
	if err != nil {
		return nil, c.Errf("admin token file: %v", err)
	}
	sum := sha256.Sum256([]byte(token))
	a.token = sum[:]
	return a, nil
}

// loopbackHost reports whether host can only be reached from this machine.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// readToken reads the bearer token: the file's one line.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		return "", fmt.Errorf("%s is empty; expected the token on one line", path)
	case strings.ContainsAny(token, "\r\n"):
		return "", fmt.Errorf("%s holds more than one line; expected the token on one line", path)
	}
	return token, nil
}

// checkMinUp refuses a min_up no set of pops can meet. The default of 1
// asks for nothing in a block without pops (anonymous sites only).
func (s *steerConfig) checkMinUp(file string, pops int) error {
	if s.minUpLine == 0 {
		s.minUp = min(s.minUp, pops)
		return nil
	}
	if s.minUp > pops {
		return fmt.Errorf("%s:%d - Error during parsing: min_up %d is more than the %d pops of this block; expected at most %d", file, s.minUpLine, s.minUp, pops, pops)
	}
	return nil
}
