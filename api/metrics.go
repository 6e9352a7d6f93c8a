package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics are the API's own Prometheus series.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	ingestBatches *prometheus.CounterVec
	ingestEvents  *prometheus.CounterVec
	ingestSeconds prometheus.Histogram
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_http_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "opsflow_http_request_duration_seconds", Help: "HTTP request latency by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"method", "route"}),
		ingestBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_ingest_batches_total", Help: "Ingest batches by result (stored, replayed, invalid, too_large, failed).",
		}, []string{"result"}),
		ingestEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsflow_ingest_events_total", Help: "Ingested events by result (stored, rejected).",
		}, []string{"result"}),
		ingestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "opsflow_ingest_store_seconds", Help: "Time to store one ingest batch in PostgreSQL.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.ingestBatches, m.ingestEvents, m.ingestSeconds)
	return m
}

// middleware records every request under its route pattern, never the raw
// path, so label cardinality stays bounded.
func (m *httpMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(c.Request().Method, route, strconv.Itoa(c.Response().Status)).Inc()
		m.duration.WithLabelValues(c.Request().Method, route).Observe(time.Since(start).Seconds())
		return nil
	}
}

func metricsHandler(g prometheus.Gatherer) echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}
