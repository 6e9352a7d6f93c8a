// Package config parses opsflow's environment once at start-up into a typed,
// validated struct. Every variable, its meaning and its default is listed in
// the README; Vars below is the single source of that table.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is the whole runtime configuration.
type Config struct {
	DatabaseURL       string
	HTTPAddr          string
	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string
	TemporalUIURL     string
	// AdminKey is the bootstrap API key holding every scope; empty disables it.
	AdminKey string
	// SecretKey encrypts secrets at rest (32 bytes); nil until configured.
	SecretKey   []byte
	NotifyAllow []string
	LogLevel    slog.Level
	DataDir     string

	DBMaxConns int32

	// SecretKeyPrevious opens secrets sealed before a key rotation; nil
	// when there is none.
	SecretKeyPrevious []byte
	// NotifyRetry* are the default retry policy of notification delivery;
	// channels may override them.
	NotifyRetryInitial     time.Duration
	NotifyRetryMaxInterval time.Duration
	NotifyRetryMaxAttempts int
	// WorkerMetricsAddr is where `opsflow worker` serves /metrics.
	WorkerMetricsAddr string

	IngestMaxBodyBytes int64
	IngestMaxEvents    int
	// IngestMaxAge bounds how late an event may arrive; older ones are refused
	// because retention would drop them right away.
	IngestMaxAge time.Duration
	// IngestMaxFutureSkew bounds gateway clock skew.
	IngestMaxFutureSkew time.Duration
	// RealtimeMaxSubscribers bounds open dashboard realtime streams per API
	// process; past it, 503.
	RealtimeMaxSubscribers int
	// DashboardRawTimeout bounds a dashboard query that reads raw request
	// logs (api_key filters and breakdowns); past it, 503 query_timeout.
	DashboardRawTimeout time.Duration
}

// Var documents one environment variable.
type Var struct {
	Name, Default, Meaning string
}

// Vars lists every variable opsflow reads, with its default.
var Vars = []Var{
	{"DATABASE_URL", "the local dev cluster (`opsflow dev`); required for `api`/`worker`", "PostgreSQL DSN"},
	{"OPSFLOW_HTTP_ADDR", "127.0.0.1:8080", "API listen address"},
	{"OPSFLOW_TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend host:port"},
	{"OPSFLOW_TEMPORAL_NAMESPACE", "default", "Temporal namespace"},
	{"OPSFLOW_TASK_QUEUE", "opsflow", "task queue of the worker"},
	{"OPSFLOW_TEMPORAL_UI_URL", "http://127.0.0.1:8233", "base of Temporal UI links"},
	{"OPSFLOW_ADMIN_KEY", "none (dev: generated, kept under .opsflow/, printed)", "bootstrap API key with every scope"},
	{"OPSFLOW_SECRET_KEY", "none (dev: generated, kept under .opsflow/)", "base64 of a 32-byte key for secrets at rest"},
	{"OPSFLOW_SECRET_KEY_PREVIOUS", "none", "base64 of the key OPSFLOW_SECRET_KEY replaced: still opens secrets sealed before the rotation"},
	{"OPSFLOW_NOTIFY_ALLOW", "empty", "comma-separated CIDRs/hosts outbound notifications may reach despite the SSRF rules"},
	{"OPSFLOW_NOTIFY_RETRY_INITIAL", "1m", "wait after a notification's first failed attempt; doubles per attempt"},
	{"OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL", "1h", "longest wait between two attempts"},
	{"OPSFLOW_NOTIFY_RETRY_MAX_ATTEMPTS", "5", "attempts before a notification is dead (1-100)"},
	{"OPSFLOW_WORKER_METRICS_ADDR", "127.0.0.1:9091", "where `opsflow worker` serves /metrics (`opsflow dev` serves everything on the API's)"},
	{"OPSFLOW_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"OPSFLOW_DATA_DIR", ".opsflow", "where `opsflow dev` keeps its PostgreSQL cluster, Temporal database and keys"},
	{"OPSFLOW_DB_MAX_CONNS", "16", "size of the pgx pool"},
	{"OPSFLOW_INGEST_MAX_BODY_BYTES", "33554432", "largest ingest body, compressed or not (413 above)"},
	{"OPSFLOW_INGEST_MAX_EVENTS", "10000", "most events in one ingest batch (413 above)"},
	{"OPSFLOW_INGEST_MAX_AGE", "720h", "oldest event timestamp accepted"},
	{"OPSFLOW_INGEST_MAX_FUTURE_SKEW", "5m", "how far in the future an event timestamp may be"},
	{"OPSFLOW_REALTIME_MAX_SUBSCRIBERS", "100", "open `GET /api/v1/dashboard/realtime` streams per API process (503 above)"},
	{"OPSFLOW_DASHBOARD_RAW_TIMEOUT", "30s", "statement timeout of dashboard queries that read raw request logs (`api_key` filters and breakdowns); past it, 503 `query_timeout`"},
}

// Load reads the environment through getenv (os.Getenv when nil).
func Load(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := parser{getenv: getenv}
	c := Config{
		DatabaseURL:         p.str("DATABASE_URL", ""),
		HTTPAddr:            p.addr("OPSFLOW_HTTP_ADDR", "127.0.0.1:8080"),
		TemporalAddress:     p.addr("OPSFLOW_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		TemporalNamespace:   p.str("OPSFLOW_TEMPORAL_NAMESPACE", "default"),
		TaskQueue:           p.str("OPSFLOW_TASK_QUEUE", "opsflow"),
		TemporalUIURL:       strings.TrimRight(p.str("OPSFLOW_TEMPORAL_UI_URL", "http://127.0.0.1:8233"), "/"),
		AdminKey:            p.str("OPSFLOW_ADMIN_KEY", ""),
		SecretKey:           p.secretKey("OPSFLOW_SECRET_KEY"),
		NotifyAllow:         p.allowList("OPSFLOW_NOTIFY_ALLOW"),
		LogLevel:            p.level("OPSFLOW_LOG_LEVEL", slog.LevelInfo),
		DataDir:             p.str("OPSFLOW_DATA_DIR", ".opsflow"),
		DBMaxConns:          int32(p.intRange("OPSFLOW_DB_MAX_CONNS", 16, 2, 1000)),
		IngestMaxBodyBytes:  int64(p.intRange("OPSFLOW_INGEST_MAX_BODY_BYTES", 32<<20, 1<<10, 1<<30)),
		IngestMaxEvents:     p.intRange("OPSFLOW_INGEST_MAX_EVENTS", 10000, 1, 1_000_000),
		IngestMaxAge:        p.duration("OPSFLOW_INGEST_MAX_AGE", 720*time.Hour),
		IngestMaxFutureSkew: p.duration("OPSFLOW_INGEST_MAX_FUTURE_SKEW", 5*time.Minute),
	}
	if c.AdminKey != "" && len(c.AdminKey) < 24 {
		p.fail("OPSFLOW_ADMIN_KEY", "must be at least 24 characters")
	}
	c.SecretKeyPrevious = p.secretKey("OPSFLOW_SECRET_KEY_PREVIOUS")
	c.NotifyRetryInitial = p.duration("OPSFLOW_NOTIFY_RETRY_INITIAL", time.Minute)
	c.NotifyRetryMaxInterval = p.duration("OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL", time.Hour)
	c.NotifyRetryMaxAttempts = p.intRange("OPSFLOW_NOTIFY_RETRY_MAX_ATTEMPTS", 5, 1, 100)
	if c.NotifyRetryMaxInterval < c.NotifyRetryInitial {
		p.fail("OPSFLOW_NOTIFY_RETRY_MAX_INTERVAL", "must be at least OPSFLOW_NOTIFY_RETRY_INITIAL")
	}
	c.WorkerMetricsAddr = p.addr("OPSFLOW_WORKER_METRICS_ADDR", "127.0.0.1:9091")
	c.RealtimeMaxSubscribers = p.intRange("OPSFLOW_REALTIME_MAX_SUBSCRIBERS", 100, 1, 100_000)
	c.DashboardRawTimeout = p.duration("OPSFLOW_DASHBOARD_RAW_TIMEOUT", 30*time.Second)
	if err := errors.Join(p.errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, reason string) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, reason))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) addr(name, def string) string {
	v := p.str(name, def)
	if _, _, err := net.SplitHostPort(v); err != nil {
		p.fail(name, "must be host:port")
	}
	return v
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		p.fail(name, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		p.fail(name, "must be a positive Go duration such as 90s or 24h")
		return def
	}
	return d
}

func (p *parser) list(name string) []string {
	var out []string
	for _, s := range strings.Split(p.getenv(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) level(name string, def slog.Level) slog.Level {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(raw)); err != nil {
		p.fail(name, "must be debug, info, warn or error")
		return def
	}
	return l
}

func (p *parser) secretKey(name string) []byte {
	raw := p.str(name, "")
	if raw == "" {
		return nil
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) != 32 {
		p.fail(name, "must be the base64 encoding of exactly 32 bytes")
		return nil
	}
	return key
}

// allowList reads OPSFLOW_NOTIFY_ALLOW: each entry a CIDR, an IP address or
// a host name.
func (p *parser) allowList(name string) []string {
	entries := p.list(name)
	for _, e := range entries {
		if _, err := netip.ParsePrefix(e); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(e); err == nil {
			continue
		}
		if !hostName.MatchString(e) {
			p.fail(name, fmt.Sprintf("%q is not a CIDR, an IP address or a host name", e))
		}
	}
	return entries
}

var hostName = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$`)
