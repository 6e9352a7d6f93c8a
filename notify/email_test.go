package notify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/notify"
)

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "opsflow test SMTP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

type mail struct {
	from string
	to   []string
	data string
}

// smtpSink is a real SMTP server on loopback that keeps what it receives.
type smtpSink struct {
	user, password string
	mu             sync.Mutex
	got            []mail
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: s}, nil }

func (s *smtpSink) mails() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.got...)
}

type smtpSession struct {
	sink   *smtpSink
	authed bool
	cur    mail
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		if user != s.sink.user || password != s.sink.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.authed = true
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.sink.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.cur.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(b)
	s.sink.mu.Lock()
	s.sink.got = append(s.sink.got, s.cur)
	s.sink.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = mail{} }
func (s *smtpSession) Logout() error { return nil }

// startSMTP serves sink on loopback: mode "none" plain, "starttls" with
// STARTTLS offered, "tls" TLS from the first byte.
func startSMTP(t *testing.T, sink *smtpSink, mode string, cert tls.Certificate) int {
	t.Helper()
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	var ln net.Listener
	var err error
	switch mode {
	case notify.TLSNone:
		srv.AllowInsecureAuth = true
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	case notify.TLSStartTLS:
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	case notify.TLSImplicit:
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ln, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	}
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestEmailOverEveryTransport(t *testing.T) {
	cert, pool := selfSigned(t)
	tests := []struct {
		mode, user, password string
	}{
		{mode: notify.TLSNone},
		{mode: notify.TLSStartTLS, user: "alerts", password: "smtp-pa55word"},
		{mode: notify.TLSImplicit, user: "alerts", password: "smtp-pa55word"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			sink := &smtpSink{user: tt.user, password: tt.password}
			port := startSMTP(t, sink, tt.mode, cert)
			out := notify.NewOutbound(loopback, notify.WithRootCAs(pool))
			n := notifierFor(t, notify.TypeEmail, map[string]any{
				"host": "127.0.0.1", "port": port, "tls": tt.mode, "username": tt.user, "password": tt.password,
				"from": "opsflow@example.com", "to": []string{"oncall@example.com", "team@example.com"},
			}, out)
			m := testMessage()

			require.NoError(t, n.Notify(context.Background(), m))

			got := sink.mails()
			require.Len(t, got, 1)
			assert.Equal(t, "opsflow@example.com", got[0].from)
			assert.Equal(t, []string{"oncall@example.com", "team@example.com"}, got[0].to)
			assert.Contains(t, got[0].data, "Subject: [FIRING] error rate above 5% for openai")
			assert.Contains(t, got[0].data, "Message-ID: <"+m.ID+"@opsflow>")
			assert.Contains(t, got[0].data, "error rate is 7.5% over the last 5 minutes")
		})
	}
}

func TestEmailFailuresAreClassified(t *testing.T) {
	cert, pool := selfSigned(t)
	sink := &smtpSink{user: "alerts", password: "right-password"}
	port := startSMTP(t, sink, notify.TLSStartTLS, cert)
	out := notify.NewOutbound(loopback, notify.WithRootCAs(pool))
	cfg := func(password string) map[string]any {
		return map[string]any{"host": "127.0.0.1", "port": port, "tls": notify.TLSStartTLS, "username": "alerts",
			"password": password, "from": "opsflow@example.com", "to": []string{"oncall@example.com"}}
	}

	t.Run("wrong password", func(t *testing.T) {
		err := notifierFor(t, notify.TypeEmail, cfg("wrong-SECRETPASS"), out).Notify(context.Background(), testMessage())
		var e *notify.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, notify.ReasonAuth, e.Reason)
		assert.True(t, e.Permanent)
		assert.NotContains(t, e.Error(), "SECRETPASS")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		untrusting := notify.NewOutbound(loopback)
		err := notifierFor(t, notify.TypeEmail, cfg("right-password"), untrusting).Notify(context.Background(), testMessage())
		var e *notify.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, notify.ReasonNetwork, e.Reason)
		assert.False(t, e.Permanent)
	})
	t.Run("refused host", func(t *testing.T) {
		raw := `{"host": "127.0.0.1", "port": ` + strconv.Itoa(port) + `, "from": "a@example.com", "to": ["b@example.com"]}`
		c, err := notify.ParseConfig(notify.TypeEmail, []byte(raw))
		require.NoError(t, err)
		err = c.Validate(context.Background(), notify.NewOutbound(nil))
		var fe *notify.FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, "config.host", fe.Field)
		assert.ErrorIs(t, err, notify.ErrRefused)
	})
	assert.Empty(t, sink.mails())
}
