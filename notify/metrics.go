package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opsflow/opsflow/db"
)

// Metrics counts delivery outcomes in the worker. A nil *Metrics counts
// nothing.
type Metrics struct {
	sent   *prometheus.CounterVec
	failed *prometheus.CounterVec
	dead   *prometheus.CounterVec
}

// NewMetrics registers the delivery counters on reg. Every channel type and
// reason starts at zero, so rates and alerts work before the first failure.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_notifications_sent_total", Help: "Notifications delivered, by channel type.",
		}, []string{"channel_type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_notifications_failed_total",
			Help: "Failed delivery attempts, by channel type and reason (auth, rate_limited, timeout, server_error, client_error, dns_refused, network, internal).",
		}, []string{"channel_type", "reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_notifications_dead_total", Help: "Notifications dead-lettered after their last attempt, by channel type.",
		}, []string{"channel_type"}),
	}
	reg.MustRegister(m.sent, m.failed, m.dead)
	for _, t := range Types {
		m.sent.WithLabelValues(t)
		m.dead.WithLabelValues(t)
		for _, r := range Reasons {
			m.failed.WithLabelValues(t, string(r))
		}
	}
	return m
}

// Sent counts a delivery.
func (m *Metrics) Sent(channelType string) {
	if m != nil {
		m.sent.WithLabelValues(channelType).Inc()
	}
}

// Failed counts a failed attempt.
func (m *Metrics) Failed(channelType string, r Reason) {
	if m != nil {
		m.failed.WithLabelValues(channelType, string(r)).Inc()
	}
}

// Dead counts a notification dead-lettered.
func (m *Metrics) Dead(channelType string) {
	if m != nil {
		m.dead.WithLabelValues(channelType).Inc()
	}
}

// deadLetterTimeout bounds the scrape-time query.
const deadLetterTimeout = 2 * time.Second

// deadLetterCollector reports the dead-letter depth, read from PostgreSQL at
// scrape time, so every API replica reports the same truth.
type deadLetterCollector struct {
	db   *db.DB
	log  *slog.Logger
	desc *prometheus.Desc
}

// NewDeadLetterCollector builds the opsflow_notifications_dead_letter_depth
// collector. When PostgreSQL does not answer, the series is left out of that
// scrape (and the failure logged) rather than failing all of /metrics.
func NewDeadLetterCollector(d *db.DB, log *slog.Logger) prometheus.Collector {
	return &deadLetterCollector{db: d, log: log, desc: prometheus.NewDesc(
		"opsflow_notifications_dead_letter_depth",
		"Notifications dead and waiting for a requeue, by channel type.",
		[]string{"channel_type"}, nil)}
}

func (c *deadLetterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *deadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterTimeout)
	defer cancel()
	depth, err := db.DeadLetterDepth(ctx, c.db.Bun)
	if err != nil {
		c.log.Warn("dead-letter depth unavailable", slog.Any("err", err))
		return
	}
	for _, t := range Types {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(depth[t]), t)
	}
}
