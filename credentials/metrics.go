package credentials

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsflow/opsflow/db"
	"github.com/opsflow/opsflow/workflows"
)

// Outcomes lists every refresh outcome, the label values of
// opsflow_credential_refreshes_total.
var Outcomes = []string{workflows.RefreshRefreshed, workflows.RefreshTransient, workflows.RefreshRejected,
	workflows.RefreshSuperseded, workflows.RefreshFresh, workflows.RefreshFailed}

// Metrics counts refresh outcomes in the worker. A nil *Metrics counts
// nothing.
type Metrics struct {
	refreshes *prometheus.CounterVec
}

// NewMetrics registers the refresh counter on reg; every outcome starts at
// zero, so rates and alerts work before the first failure.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "opsflow_credential_refreshes_total",
		Help: "Credential refresh attempts by outcome (refreshed, transient, rejected, superseded, fresh, failed).",
	}, []string{"outcome"})}
	reg.MustRegister(m.refreshes)
	for _, o := range Outcomes {
		m.refreshes.WithLabelValues(o)
	}
	return m
}

// Refresh counts one outcome.
func (m *Metrics) Refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(outcome).Inc()
	}
}

// scrapeTimeout bounds the scrape-time query.
const scrapeTimeout = 2 * time.Second

// collector reports credentials by status and each credential's time to
// expiry, read from PostgreSQL at scrape time, so every replica reports the
// same truth.
type collector struct {
	db       *db.DB
	log      *slog.Logger
	now      func() time.Time
	byStatus *prometheus.Desc
	expiry   *prometheus.Desc
}

// NewCollector builds the opsflow_credentials and
// opsflow_credential_expiry_seconds collectors. When PostgreSQL does not
// answer, the series are left out of that scrape (and the failure logged)
// rather than failing all of /metrics.
func NewCollector(d *db.DB, log *slog.Logger, now func() time.Time) prometheus.Collector {
	return &collector{db: d, log: log, now: now,
		byStatus: prometheus.NewDesc("opsflow_credentials", "Live upstream credentials by status.", []string{"status"}, nil),
		expiry: prometheus.NewDesc("opsflow_credential_expiry_seconds",
			"Seconds until a credential's access token expires; negative once expired. Absent without a known expiry.",
			[]string{"credential"}, nil)}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.byStatus; ch <- c.expiry }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauges, err := db.CredentialGauges(ctx, c.db.Bun)
	if err != nil {
		c.log.Warn("credential metrics unavailable", slog.Any("err", err))
		return
	}
	counts := map[string]int{}
	now := c.now()
	for _, g := range gauges {
		counts[g.Status]++
		if g.ExpiresAt != nil {
			ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, g.ExpiresAt.Sub(now).Seconds(), g.Name)
		}
	}
	for _, s := range db.CredentialStatuses {
		ch <- prometheus.MustNewConstMetric(c.byStatus, prometheus.GaugeValue, float64(counts[s]), s)
	}
}
