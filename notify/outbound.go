package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Timeout bounds one outbound delivery: connect, TLS, request and answer.
const Timeout = 10 * time.Second

// ErrRefused marks a destination the SSRF rules refuse; errors.Is finds it
// inside every *RefusedError.
var ErrRefused = errors.New("destination refused")

// RefusedError names a refused destination and why. It never carries a URL's
// path or query, which may hold tokens.
type RefusedError struct {
	Target string
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Target == "" {
		return "destination refused: " + e.Reason
	}
	return fmt.Sprintf("destination %s refused: %s", e.Target, e.Reason)
}

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

func refused(target, format string, args ...any) error {
	return &RefusedError{Target: target, Reason: fmt.Sprintf(format, args...)}
}

// Outbound is the one way notifications leave opsflow (SPEC §10): every
// channel's HTTP requests and SMTP connections dial through it. A destination
// must be http(s) (or an SMTP host), resolve only to public unicast
// addresses, and is dialled at the very address that was checked, so a DNS
// answer that changes between the check and the dial (rebinding) cannot
// slip through. OPSFLOW_NOTIFY_ALLOW is the only way past the rules.
type Outbound struct {
	allowNets  []netip.Prefix
	allowHosts map[string]bool
	lookup     func(ctx context.Context, host string) ([]netip.Addr, error)
	dial       func(ctx context.Context, network, address string) (net.Conn, error)
	roots      *x509.CertPool
	http       *http.Client
}

// Option adjusts an Outbound.
type Option func(*Outbound)

// WithLookup replaces DNS resolution, e.g. with a fixed table in tests, which
// must never query a real resolver.
func WithLookup(lookup func(ctx context.Context, host string) ([]netip.Addr, error)) Option {
	return func(o *Outbound) { o.lookup = lookup }
}

// WithDialer replaces the final dial of an already checked IP:port.
func WithDialer(dial func(ctx context.Context, network, address string) (net.Conn, error)) Option {
	return func(o *Outbound) { o.dial = dial }
}

// WithRootCAs sets the certificate authorities TLS destinations must chain
// to; nil (the default) means the system's.
func WithRootCAs(roots *x509.CertPool) Option {
	return func(o *Outbound) { o.roots = roots }
}

// NewOutbound builds the outbound client. Each allow entry is a CIDR, an IP
// address or a host name (exact, case-insensitive); config.Load has already
// vetted them, so anything that is not an address is taken as a name.
func NewOutbound(allow []string, opts ...Option) *Outbound {
	o := &Outbound{allowHosts: map[string]bool{}}
	for _, entry := range allow {
		entry = strings.TrimSpace(entry)
		if p, err := netip.ParsePrefix(entry); err == nil {
			o.allowNets = append(o.allowNets, p.Masked())
		} else if a, err := netip.ParseAddr(entry); err == nil {
			o.allowNets = append(o.allowNets, netip.PrefixFrom(a, a.BitLen()))
		} else if entry != "" {
			o.allowHosts[canonicalHost(entry)] = true
		}
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.lookup == nil {
		o.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	o.http = &http.Client{
		Timeout: Timeout,
		Transport: checkedTransport{o: o, next: &http.Transport{
			// No proxy: a proxy would dial on our behalf and bypass the checks.
			Proxy:                 nil,
			DialContext:           o.DialContext,
			TLSClientConfig:       o.TLSConfig(""),
			TLSHandshakeTimeout:   Timeout,
			ResponseHeaderTimeout: Timeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		}},
		// A redirect could point anywhere, including at what the checks
		// refuse; the 3xx answer itself is reported as the failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return o
}

// HTTPClient is the client every HTTP channel sends with.
func (o *Outbound) HTTPClient() *http.Client { return o.http }

// TLSConfig is the TLS configuration for a destination named serverName.
func (o *Outbound) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, RootCAs: o.roots, MinVersion: tls.VersionTLS12}
}

// ValidateURL checks a destination URL: scheme, host, port, and that the host
// resolves only to addresses the rules let through. Channels are checked
// with it when saved; DialContext checks again at every connection.
func (o *Outbound) ValidateURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return refused("", "not a valid URL")
	}
	if err := o.checkURL(u); err != nil {
		return err
	}
	_, err = o.resolve(ctx, u.Hostname())
	return err
}

// checkURL is ValidateURL without the resolution: scheme, host and port.
func (o *Outbound) checkURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return refused(u.Hostname(), "scheme %q is not http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return refused("", "the URL has no host")
	}
	if port := u.Port(); port != "" {
		if _, err := parsePort(port); err != nil {
			return refused(u.Hostname(), "port %q is not a number from 1 to 65535", port)
		}
	}
	_, _, err := o.parseHost(u.Hostname())
	return err
}

// checkedTransport applies checkURL to every request before the transport
// sees it: the transport would otherwise rewrite some hosts (international
// names to punycode) that ValidateURL refuses, and dial them.
type checkedTransport struct {
	o    *Outbound
	next http.RoundTripper
}

func (t checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.o.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(req)
}

// ValidateHost checks a bare host name or address (an SMTP server).
func (o *Outbound) ValidateHost(ctx context.Context, host string) error {
	_, err := o.resolve(ctx, host)
	return err
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("bad port")
	}
	return n, nil
}

// destination is a checked host: the addresses it may be dialled at.
type destination struct {
	addrs []netip.Addr
	// byName is true when the host name itself is allowed, which lets any
	// address it resolves to through (a private deployment's own DNS).
	byName bool
}

// parseHost checks a host without resolving it: an address literal must
// pass the rules, a name must be a plain DNS name. It returns the canonical
// host and, for a literal, the address.
func (o *Outbound) parseHost(host string) (string, netip.Addr, error) {
	host = canonicalHost(host)
	if host == "" {
		return "", netip.Addr{}, refused("", "the host is empty")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", netip.Addr{}, refused(host, "addresses with a zone are not allowed")
		}
		if err := o.checkAddr(a); err != nil {
			return "", netip.Addr{}, refused(host, "%s", err)
		}
		return host, a, nil
	}
	if reason := badHostName(host); reason != "" {
		return "", netip.Addr{}, refused(host, "%s", reason)
	}
	return host, netip.Addr{}, nil
}

// resolve checks host and returns the addresses that may be dialled.
func (o *Outbound) resolve(ctx context.Context, host string) (destination, error) {
	host, literal, err := o.parseHost(host)
	if err != nil {
		return destination{}, err
	}
	if literal.IsValid() {
		return destination{addrs: []netip.Addr{literal}}, nil
	}
	byName := o.allowHosts[host]
	addrs, err := o.lookup(ctx, host)
	if err != nil {
		return destination{}, &DNSError{Host: host, Err: err}
	}
	if len(addrs) == 0 {
		return destination{}, &DNSError{Host: host, Err: errors.New("no addresses")}
	}
	if !byName {
		// Every address must pass: a name with one private address among
		// public ones is refused rather than trimmed, since the private one
		// is what an attacker would have added.
		for _, a := range addrs {
			if err := o.checkAddr(a); err != nil {
				return destination{}, refused(host, "resolves to %s: %s", a, err)
			}
		}
	}
	return destination{addrs: addrs, byName: byName}, nil
}

// DNSError is a failed lookup: the name may resolve later, so it is worth
// retrying, unlike a refusal.
type DNSError struct {
	Host string
	Err  error
}

func (e *DNSError) Error() string {
	var dnsErr *net.DNSError
	if errors.As(e.Err, &dnsErr) && dnsErr.IsNotFound {
		return fmt.Sprintf("cannot resolve %s: no such host", e.Host)
	}
	return fmt.Sprintf("cannot resolve %s: %v", e.Host, e.Err)
}

func (e *DNSError) Unwrap() error { return e.Err }

func canonicalHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimPrefix(strings.TrimSuffix(h, "]"), "[")
	return strings.TrimSuffix(h, ".")
}

// badHostName refuses what is not a plain DNS name. Numeric forms other than
// dotted-quad IPv4 (2130706433, 0x7f.1, 0177.0.0.1) are refused outright: the
// C resolver would read them as addresses, and which address depends on the
// libc.
func badHostName(h string) string {
	if len(h) > 253 {
		return "the host name is too long"
	}
	labels := strings.Split(h, ".")
	last := labels[len(labels)-1]
	if isNumericLabel(last) {
		return "numeric host in a non-canonical form (write the address as a dotted quad)"
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "the host name has an empty or over-long label"
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Sprintf("the host name has the character %q (use the punycode form of international names)", r)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "a host name label starts or ends with a hyphen"
		}
	}
	return ""
}

// isNumericLabel matches decimal, octal and hex numbers: no top-level domain
// looks like one.
func isNumericLabel(l string) bool {
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		for _, r := range rest {
			if !strings.ContainsRune("0123456789abcdef", r) {
				return false
			}
		}
		return true
	}
	for _, r := range l {
		if r < '0' || r > '9' {
			return false
		}
	}
	return l != ""
}

type blocked struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges lists what outbound notifications must never reach. The
// order matters only for the reason given: narrower ranges come first.
var blockedRanges = func() []blocked {
	var out []blocked
	for _, b := range []struct{ cidr, reason string }{
		{"169.254.169.254/32", "a cloud metadata address"},
		{"fd00:ec2::254/128", "a cloud metadata address"},
		{"255.255.255.255/32", "the broadcast address"},
		{"0.0.0.0/8", "an unspecified (this-network) address"},
		{"127.0.0.0/8", "a loopback address"},
		{"10.0.0.0/8", "a private address"},
		{"172.16.0.0/12", "a private address"},
		{"192.168.0.0/16", "a private address"},
		{"100.64.0.0/10", "a carrier-grade NAT (shared) address"},
		{"169.254.0.0/16", "a link-local address"},
		{"192.0.0.0/24", "an IETF protocol assignment (incl. NAT64 discovery)"},
		{"192.0.2.0/24", "a documentation address"},
		{"198.51.100.0/24", "a documentation address"},
		{"203.0.113.0/24", "a documentation address"},
		{"198.18.0.0/15", "a benchmarking address"},
		{"224.0.0.0/4", "a multicast address"},
		{"240.0.0.0/4", "a reserved address"},
		{"::/128", "the unspecified address"},
		{"::1/128", "a loopback address"},
		{"::ffff:0:0:0/96", "an IPv4-translated address"},
		{"::/96", "an IPv4-compatible address"},
		{"64:ff9b:1::/48", "a local-use NAT64 address"},
		{"100::/64", "a discard-only address"},
		{"2001::/32", "a Teredo address"},
		{"2001:10::/28", "an ORCHID address"},
		{"2001:db8::/32", "a documentation address"},
		{"fc00::/7", "a unique local (ULA) address"},
		{"fe80::/10", "a link-local address"},
		{"fec0::/10", "a site-local address"},
		{"ff00::/8", "a multicast address"},
	} {
		out = append(out, blocked{netip.MustParsePrefix(b.cidr), b.reason})
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// checkAddr returns why a may not be dialled, or nil.
func (o *Outbound) checkAddr(a netip.Addr) error {
	a = a.WithZone("")
	if o.allowed(a) {
		return nil
	}
	a = a.Unmap()
	if o.allowed(a) {
		return nil
	}
	// Addresses that embed an IPv4 address reach it through a translator:
	// they are as safe as the address they carry.
	if a.Is6() && (nat64.Contains(a) || sixToFour.Contains(a)) {
		b := a.As16()
		var v4 netip.Addr
		if nat64.Contains(a) {
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		} else {
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if err := o.checkAddr(v4); err != nil {
			return fmt.Errorf("embeds %s, %w", v4, err)
		}
		return nil
	}
	for _, b := range blockedRanges {
		if b.prefix.Contains(a) {
			return errors.New(b.reason + " (" + b.prefix.String() + ")")
		}
	}
	if !a.IsGlobalUnicast() {
		return errors.New("not a global unicast address")
	}
	return nil
}

func (o *Outbound) allowed(a netip.Addr) bool {
	for _, p := range o.allowNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// DialContext resolves and checks address's host, then dials the checked
// addresses themselves. The dialer's Control hook checks the socket's actual
// peer once more, just before connect, whatever produced the address.
func (o *Outbound) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, refused("", "network %q is not tcp", network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, refused("", "address %q is not host:port", address)
	}
	if _, err := parsePort(port); err != nil {
		return nil, refused(host, "port %q is not a number from 1 to 65535", port)
	}
	dest, err := o.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range dest.addrs {
		conn, err := o.dialChecked(ctx, network, net.JoinHostPort(a.String(), port), dest.byName)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (o *Outbound) dialChecked(ctx context.Context, network, address string, byName bool) (net.Conn, error) {
	if o.dial != nil {
		return o.dial(ctx, network, address)
	}
	d := net.Dialer{
		Timeout: Timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			if byName {
				return nil
			}
			return o.checkPeer(address)
		},
	}
	return d.DialContext(ctx, network, address)
}

// checkPeer is the last check, on the address the kernel is about to
// connect to.
func (o *Outbound) checkPeer(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refused("", "cannot parse the dialled address %q", address)
	}
	if err := o.checkAddr(ap.Addr()); err != nil {
		return refused(ap.Addr().String(), "%s", err)
	}
	return nil
}
