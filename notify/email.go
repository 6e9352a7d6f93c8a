package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strconv"

	"github.com/wneessen/go-mail"

	"github.com/opsflow/opsflow/secrets"
)

// SMTP transport security modes.
const (
	TLSNone     = "none"     // plain SMTP, no credentials allowed
	TLSStartTLS = "starttls" // STARTTLS required
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS)
)

var defaultSMTPPorts = map[string]int{TLSNone: 25, TLSStartTLS: 587, TLSImplicit: 465}

// maxRecipients bounds one channel's recipient list.
const maxRecipients = 50

type emailSpec struct {
	Host     string         `json:"host"`
	Port     int            `json:"port,omitempty"`
	TLS      string         `json:"tls,omitempty"`
	Username string         `json:"username,omitempty"`
	Password secrets.String `json:"password,omitempty"`
	From     string         `json:"from"`
	To       []string       `json:"to"`
}

func (s *emailSpec) validate(ctx context.Context, o *Outbound) error {
	if s.TLS == "" {
		s.TLS = TLSStartTLS
	}
	if _, ok := defaultSMTPPorts[s.TLS]; !ok {
		return fieldErr("config.tls", "must be none, starttls or tls")
	}
	if s.Port == 0 {
		s.Port = defaultSMTPPorts[s.TLS]
	}
	if s.Port < 1 || s.Port > 65535 {
		return fieldErr("config.port", "must be from 1 to 65535")
	}
	if (s.Username == "") != (s.Password == "") {
		return fieldErr("config.password", "username and password go together")
	}
	if s.Password != "" && s.TLS == TLSNone {
		return fieldErr("config.tls", "credentials are never sent unencrypted: use starttls or tls")
	}
	if _, err := netmail.ParseAddress(s.From); err != nil {
		return fieldErr("config.from", "is not an email address")
	}
	if len(s.To) == 0 || len(s.To) > maxRecipients {
		return fieldErr("config.to", "needs 1 to %d addresses", maxRecipients)
	}
	for i, to := range s.To {
		if _, err := netmail.ParseAddress(to); err != nil {
			return fieldErr(fmt.Sprintf("config.to[%d]", i), "is not an email address")
		}
	}
	if s.Host == "" {
		return fieldErr("config.host", "is required")
	}
	if err := o.ValidateHost(ctx, s.Host); err != nil {
		return fieldCause("config.host", err)
	}
	return nil
}

func (s *emailSpec) masked() spec {
	m := *s
	m.Password = maskedString(s.Password)
	return &m
}

func (s *emailSpec) keepSecrets(old spec) {
	s.Password = keepSecret(s.Password, old.(*emailSpec).Password, maskSecret)
}

func (s *emailSpec) notifier(o *Outbound) Notifier { return &email{spec: *s, out: o} }

type email struct {
	spec emailSpec
	out  *Outbound
}

func (e *email) Notify(ctx context.Context, m Message) error {
	msg := mail.NewMsg()
	if err := msg.From(e.spec.From); err != nil {
		return &Error{Reason: ReasonClientError, Permanent: true, Msg: "invalid from address"}
	}
	if err := msg.To(e.spec.To...); err != nil {
		return &Error{Reason: ReasonClientError, Permanent: true, Msg: "invalid to address"}
	}
	msg.Subject(m.headline())
	// A stable Message-ID lets mail systems drop a repeat of the same
	// notification.
	msg.SetMessageIDWithValue(m.ID + "@opsflow")
	msg.SetBodyString(mail.TypeTextPlain, m.text())

	c, err := mail.NewClient(e.spec.Host, e.options()...)
	if err != nil {
		return &Error{Reason: ReasonInternal, Permanent: true, Msg: "SMTP client: " + err.Error()}
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return smtpError(err)
	}
	return nil
}

func (e *email) options() []mail.Option {
	opts := []mail.Option{
		mail.WithPort(e.spec.Port),
		mail.WithTimeout(Timeout),
		mail.WithTLSConfig(e.out.TLSConfig(e.spec.Host)),
		mail.WithDialContextFunc(e.dial),
	}
	switch e.spec.TLS {
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	}
	if e.spec.Username != "" {
		// PLAIN and LOGIN refuse to run over an unencrypted connection, so
		// the password only ever travels inside TLS.
		opts = append(opts, mail.WithUsername(e.spec.Username), mail.WithPassword(e.spec.Password.Reveal()),
			mail.WithOpportunisticSMTPAuth(mail.SMTPAuthPlain, mail.SMTPAuthLogin))
	} else {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthNoAuth))
	}
	return opts
}

// dial goes through the SSRF-checked dialer. go-mail leaves implicit TLS to
// a custom dialer, so the handshake happens here.
func (e *email) dial(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := e.out.DialContext(ctx, network, address)
	if err != nil || e.spec.TLS != TLSImplicit {
		return conn, err
	}
	tlsConn := tls.Client(conn, e.out.TLSConfig(e.spec.Host))
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tlsConn, nil
}

// smtpError classifies an SMTP failure: 4xx replies are worth retrying, 5xx
// are not, and a rejected login is an auth failure.
func smtpError(err error) error {
	var tpErr *textproto.Error
	var sendErr *mail.SendError
	switch {
	case errors.As(err, &tpErr) && (tpErr.Code == 530 || tpErr.Code == 534 || tpErr.Code == 535):
		return &Error{Reason: ReasonAuth, Permanent: true, Status: tpErr.Code,
			Msg: "SMTP authentication failed: " + strconv.Itoa(tpErr.Code) + " " + tpErr.Msg, err: err}
	case errors.As(err, &sendErr):
		code := sendErr.ErrorCode()
		if sendErr.IsTemp() {
			return &Error{Reason: ReasonServerError, Status: code, Msg: "SMTP server deferred the message: " + err.Error(), err: err}
		}
		return &Error{Reason: ReasonClientError, Permanent: true, Status: code, Msg: "SMTP server rejected the message: " + err.Error(), err: err}
	case errors.As(err, &tpErr) && tpErr.Code >= 400 && tpErr.Code < 500:
		return &Error{Reason: ReasonServerError, Status: tpErr.Code, Msg: "SMTP server answered " + strconv.Itoa(tpErr.Code) + " " + tpErr.Msg, err: err}
	case errors.As(err, &tpErr) && tpErr.Code >= 500:
		return &Error{Reason: ReasonClientError, Permanent: true, Status: tpErr.Code, Msg: "SMTP server answered " + strconv.Itoa(tpErr.Code) + " " + tpErr.Msg, err: err}
	}
	return transportError(err)
}
