package notify_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/notify"
)

// lookupTable resolves names from a fixed table, so no test ever asks a
// real resolver; unknown names do not resolve.
func lookupTable(table map[string][]string) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		raw, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		out := make([]netip.Addr, len(raw))
		for i, s := range raw {
			out[i] = netip.MustParseAddr(s)
		}
		return out, nil
	}
}

// dialRecorder stands in for the network: it records what would have been
// dialled and connects nowhere, unless through is set, when it dials for
// real (loopback only, in these tests).
type dialRecorder struct {
	mu      sync.Mutex
	dialled []string
	through bool
}

var errNoNetwork = errors.New("test dialer: no network")

func (r *dialRecorder) dial(ctx context.Context, network, address string) (net.Conn, error) {
	r.mu.Lock()
	r.dialled = append(r.dialled, address)
	r.mu.Unlock()
	if !r.through {
		return nil, errNoNetwork
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (r *dialRecorder) addresses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dialled...)
}

var hostileNames = map[string][]string{
	"localhost":                    {"127.0.0.1", "::1"},
	"metadata.google.internal":     {"169.254.169.254"},
	"instance-data.ec2.internal":   {"169.254.169.254"},
	"internal.example":             {"10.1.2.3"},
	"mixed.example":                {"8.8.8.8", "10.0.0.1"},
	"127.0.0.1.nip.io":             {"127.0.0.1"},
	"169.254.169.254.nip.io":       {"169.254.169.254"},
	"cgnat.example":                {"100.64.0.9"},
	"ula.example":                  {"fd12:3456::1"},
	"mapped.example":               {"::ffff:10.0.0.1"},
	"link-local.example":           {"fe80::1"},
	"kubernetes.default.svc.local": {"10.96.0.1"},
}

// hostileURLs must all be refused, and never dialled.
var hostileURLs = []string{
	"http://127.0.0.1/",
	"http://127.0.0.1:8080/admin",
	"http://localhost/",
	"http://LOCALHOST./",
	"http://2130706433/",         // 127.0.0.1 in decimal
	"http://0177.0.0.1/",         // octal
	"http://0x7f.0.0.1/",         // hex
	"http://0x7f000001/",         // one hex number
	"http://017700000001/",       // one octal number
	"http://127.1/",              // short form
	"http://0/",                  // 0.0.0.0 in decimal
	"http://[::1]/",              // IPv6 loopback
	"http://[::ffff:127.0.0.1]/", // IPv4-mapped loopback
	"http://[::ffff:7f00:1]/",    // the same, in hex
	"http://[0:0:0:0:0:ffff:127.0.0.1]/",
	"http://[::127.0.0.1]/",        // IPv4-compatible
	"http://[64:ff9b::7f00:1]/",    // NAT64 of loopback
	"http://[64:ff9b::a9fe:a9fe]/", // NAT64 of the metadata address
	"http://[2002:7f00:1::]/",      // 6to4 of loopback
	"http://169.254.169.254/latest/meta-data/",
	"http://[::ffff:169.254.169.254]/",
	"http://[fd00:ec2::254]/latest/meta-data/",
	"http://metadata.google.internal/computeMetadata/v1/",
	"http://instance-data.ec2.internal/",
	"http://169.254.169.254.nip.io/",
	"http://127.0.0.1.nip.io/",
	"http://10.0.0.5/",
	"http://172.16.3.4/",
	"http://192.168.1.1/",
	"http://internal.example/hook",
	"http://mixed.example/", // one private answer among public ones
	"http://mapped.example/",
	"http://kubernetes.default.svc.local/",
	"http://100.64.0.1/",
	"http://cgnat.example/",
	"http://[fc00::1]/",
	"http://ula.example/",
	"http://[fe80::1]/",
	"http://[fe80::1%25eth0]/",
	"http://link-local.example/",
	"http://224.0.0.1/",
	"http://[ff02::1]/",
	"http://0.0.0.0/",
	"http://[::]/",
	"http://255.255.255.255/",
	"http://240.0.0.1/",
	"http://192.0.0.170/", // NAT64 discovery
	"http://198.18.0.1/",
	"http://[2001:db8::1]/",
	"http://user:pass@127.0.0.1/",
	"ftp://example.com/file",
	"file:///etc/passwd",
	"gopher://127.0.0.1:25/",
	"http://exämple.com/",
	"http:///path-only",
	"http://unknown.example/", // does not resolve
}

func TestHostileURLsAreRefusedAndNeverDialled(t *testing.T) {
	require.GreaterOrEqual(t, len(hostileURLs), 25)
	for _, raw := range hostileURLs {
		t.Run(raw, func(t *testing.T) {
			rec := &dialRecorder{}
			out := notify.NewOutbound(nil, notify.WithLookup(lookupTable(hostileNames)), notify.WithDialer(rec.dial))

			err := out.ValidateURL(context.Background(), raw)
			require.Error(t, err, "ValidateURL must refuse %s", raw)

			resp, err := out.HTTPClient().Get(raw)
			if err == nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			assert.Empty(t, rec.addresses(), "nothing may be dialled for %s", raw)
		})
	}
}

func TestRefusalsNameTheProblem(t *testing.T) {
	out := notify.NewOutbound(nil, notify.WithLookup(lookupTable(hostileNames)))
	tests := map[string]string{
		"http://169.254.169.254/":   "cloud metadata",
		"http://[fd00:ec2::254]/":   "cloud metadata",
		"http://10.0.0.5/":          "private",
		"http://100.64.0.1/":        "carrier-grade NAT",
		"http://[fc00::1]/":         "unique local",
		"http://2130706433/":        "non-canonical",
		"http://localhost/":         "loopback",
		"ftp://example.com/":        "not http or https",
		"http://[::ffff:10.0.0.1]/": "private",
	}
	for raw, want := range tests {
		err := out.ValidateURL(context.Background(), raw)
		require.ErrorIs(t, err, notify.ErrRefused, raw)
		assert.Contains(t, err.Error(), want, raw)
	}
}

func TestRefusalNeverRepeatsThePath(t *testing.T) {
	out := notify.NewOutbound(nil)
	err := out.ValidateURL(context.Background(), "http://10.0.0.1/services/T000/B000/SECRETTOKEN?key=SECRETQUERY")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "SECRET")
}

func TestAllowListIsTheOnlyWayThrough(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits++ }))
	defer srv.Close()

	blocked := notify.NewOutbound(nil)
	require.ErrorIs(t, blocked.ValidateURL(context.Background(), srv.URL), notify.ErrRefused)
	_, err := blocked.HTTPClient().Get(srv.URL)
	require.ErrorIs(t, err, notify.ErrRefused)
	assert.Zero(t, hits)

	allowed := notify.NewOutbound([]string{"127.0.0.0/8"})
	require.NoError(t, allowed.ValidateURL(context.Background(), srv.URL))
	resp, err := allowed.HTTPClient().Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 1, hits)
}

func TestAllowedHostNameLetsItsAddressesThrough(t *testing.T) {
	rec := &dialRecorder{}
	out := notify.NewOutbound([]string{"hooks.internal"},
		notify.WithLookup(lookupTable(map[string][]string{"hooks.internal": {"10.0.0.7"}, "other.internal": {"10.0.0.8"}})),
		notify.WithDialer(rec.dial))

	require.NoError(t, out.ValidateURL(context.Background(), "https://HOOKS.internal./x"))
	require.Error(t, out.ValidateURL(context.Background(), "https://other.internal/x"))
	_, err := out.HTTPClient().Get("http://hooks.internal/x")
	require.ErrorIs(t, err, errNoNetwork)
	assert.Equal(t, []string{"10.0.0.7:80"}, rec.addresses())
}

// TestDNSRebindingIsCaughtAtDialTime: the name passes the check when the
// channel is saved, then resolves to a private address; the dial re-checks
// and refuses it.
func TestDNSRebindingIsCaughtAtDialTime(t *testing.T) {
	var mu sync.Mutex
	answers := [][]string{{"127.0.0.1"}, {"10.0.0.1"}}
	lookup := func(_ context.Context, _ string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		a := answers[0]
		if len(answers) > 1 {
			answers = answers[1:]
		}
		return []netip.Addr{netip.MustParseAddr(a[0])}, nil
	}
	rec := &dialRecorder{}
	out := notify.NewOutbound([]string{"127.0.0.0/8"}, notify.WithLookup(lookup), notify.WithDialer(rec.dial))

	require.NoError(t, out.ValidateURL(context.Background(), "http://rebind.example/"))
	_, err := out.HTTPClient().Get("http://rebind.example/")
	require.ErrorIs(t, err, notify.ErrRefused)
	assert.Empty(t, rec.addresses())
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, target := range []string{"http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:1/", "http://localhost/admin"} {
		t.Run(target, func(t *testing.T) {
			srv := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
			defer srv.Close()
			rec := &dialRecorder{through: true}
			out := notify.NewOutbound([]string{"127.0.0.1/32"}, notify.WithDialer(rec.dial))

			resp, err := out.HTTPClient().Get(srv.URL)
			require.NoError(t, err)
			resp.Body.Close()

			assert.Equal(t, http.StatusFound, resp.StatusCode, "the redirect itself is the answer")
			u, _ := url.Parse(srv.URL)
			assert.Equal(t, []string{u.Host}, rec.addresses(), "only the target itself was dialled")
		})
	}
}

func TestDialControlChecksThePeer(t *testing.T) {
	out := notify.NewOutbound([]string{"127.0.0.0/8"})
	require.NoError(t, notify.CheckPeer(out, "127.0.0.1:80"))
	for _, peer := range []string{"10.0.0.1:80", "[::ffff:169.254.169.254]:80", "[fd00:ec2::254]:80", "0.0.0.0:80"} {
		assert.ErrorIs(t, notify.CheckPeer(out, peer), notify.ErrRefused, peer)
	}
}

// FuzzValidateURL: whatever the URL, a refused one is never dialled, and
// nothing the rules refuse is ever dialled. Names resolve from a hash into
// a mix of refused and public addresses; the dialer connects nowhere.
func FuzzValidateURL(f *testing.F) {
	for _, u := range hostileURLs {
		f.Add(u)
	}
	for _, u := range []string{"https://hooks.slack.com/services/T0/B0/X", "http://[::ffff:8.8.8.8]:443/", "http://8.8.8.8/",
		"http://a.b/%2F..", "http://[::1]:99999/", "HTTP://0X7F.1/", "http://1.1.1.1.", "https://xn--80ak6aa92e.com/"} {
		f.Add(u)
	}
	pool := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("2606:4700::1111"),
		netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("100.64.0.1"),
	}
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		h := 0
		for _, c := range host {
			h = h*31 + int(c)
		}
		h &= 0x7fffffff
		return []netip.Addr{pool[h%len(pool)], pool[(h/7)%len(pool)]}, nil
	}
	f.Fuzz(func(t *testing.T, raw string) {
		rec := &dialRecorder{}
		out := notify.NewOutbound(nil, notify.WithLookup(lookup), notify.WithDialer(rec.dial))
		validateErr := out.ValidateURL(context.Background(), raw)
		req, err := http.NewRequest(http.MethodPost, raw, nil)
		if err == nil {
			if resp, err := out.HTTPClient().Do(req); err == nil {
				resp.Body.Close()
			}
		}
		dialled := rec.addresses()
		if validateErr != nil {
			require.Empty(t, dialled, "refused %q (%v) but dialled", raw, validateErr)
		}
		for _, a := range dialled {
			require.NoError(t, notify.CheckPeer(out, a), "dialled a refused address for %q", raw)
		}
	})
}
