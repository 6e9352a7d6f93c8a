package api

import (
	"math"
	"slices"
	"strconv"

	"github.com/DataDog/sketches-go/ddsketch"

	"github.com/opsflow/opsflow/db"
)

// dashboardMetric is one time-series metric: its value for a bucket of
// seconds length, and whether it needs the sketches.
type dashboardMetric struct {
	value    func(g *db.DashboardStats, seconds float64) float64
	sketches bool
}

func counter(f func(g *db.DashboardStats) int64) dashboardMetric {
	return dashboardMetric{value: func(g *db.DashboardStats, _ float64) float64 { return float64(f(g)) }}
}

func rate(num, den func(g *db.DashboardStats) int64) dashboardMetric {
	return dashboardMetric{value: func(g *db.DashboardStats, _ float64) float64 { return deref(ratio(num(g), den(g))) }}
}

func latencyQuantile(q float64, ttft bool) dashboardMetric {
	return dashboardMetric{sketches: true, value: func(g *db.DashboardStats, _ float64) float64 {
		if ttft {
			return deref(quantile(g.TTFT, q))
		}
		return deref(quantile(g.Latency, q))
	}}
}

func requests(g *db.DashboardStats) int64  { return g.Requests }
func successes(g *db.DashboardStats) int64 { return g.Successes }
func failures(g *db.DashboardStats) int64  { return failuresOf(*g) }

// dashboardMetrics are the overview's figures as time series. Undefined
// values (a rate or percentile of an empty bucket) are 0, except
// health_score, which is neutral (100) when idle.
var dashboardMetrics = map[string]dashboardMetric{
	"requests":      counter(requests),
	"successes":     counter(successes),
	"errors":        counter(failures),
	"status_4xx":    counter(func(g *db.DashboardStats) int64 { return g.Status4xx }),
	"status_5xx":    counter(func(g *db.DashboardStats) int64 { return g.Status5xx }),
	"timeouts":      counter(func(g *db.DashboardStats) int64 { return g.Timeouts }),
	"input_tokens":  counter(func(g *db.DashboardStats) int64 { return g.InputTokens }),
	"output_tokens": counter(func(g *db.DashboardStats) int64 { return g.OutputTokens }),
	"cached_tokens": counter(func(g *db.DashboardStats) int64 { return g.CachedTokens }),
	"tokens":        counter(func(g *db.DashboardStats) int64 { return g.InputTokens + g.OutputTokens }),
	"success_rate":  rate(successes, requests),
	"error_rate":    rate(failures, requests),
	"qps": {value: func(g *db.DashboardStats, seconds float64) float64 {
		return float64(g.Requests) / seconds
	}},
	"tokens_per_second": {value: func(g *db.DashboardStats, seconds float64) float64 {
		return float64(g.InputTokens+g.OutputTokens) / seconds
	}},
	"cost_usd": {value: func(g *db.DashboardStats, _ float64) float64 { return costFloat(g.CostUSD) }},
	"latency_avg": {value: func(g *db.DashboardStats, _ float64) float64 {
		return deref(avg(g.LatencySum, g.Requests))
	}},
	"latency_max": {value: func(g *db.DashboardStats, _ float64) float64 { return g.LatencyMax }},
	"latency_p50": latencyQuantile(0.5, false),
	"latency_p90": latencyQuantile(0.9, false),
	"latency_p95": latencyQuantile(0.95, false),
	"latency_p99": latencyQuantile(0.99, false),
	"ttft_p50":    latencyQuantile(0.5, true),
	"ttft_p95":    latencyQuantile(0.95, true),
	"ttft_p99":    latencyQuantile(0.99, true),
	"health_score": {sketches: true, value: func(g *db.DashboardStats, _ float64) float64 {
		return float64(health(g).Score)
	}},
}

func metricNames() []string {
	names := make([]string, 0, len(dashboardMetrics))
	for n := range dashboardMetrics {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Health score weights (SPEC §5, documented in docs/dashboards.md). Each
// component scores 1 at or better than its good bound, 0 at or worse than
// its bad bound, linearly between; the score is their weighted sum.
const (
	healthWeightSuccess = 50 // success rate: good 99.5%, bad 90%
	healthWeightLatency = 30 // latency p95: good 5 s, bad 30 s (LLM calls are slow)
	healthWeightTimeout = 20 // timeout rate: good 0%, bad 5%
)

type healthView struct {
	// Score is 0-100; an idle window (no requests) scores a neutral 100.
	Score int  `json:"score"`
	Idle  bool `json:"idle"`
}

func health(g *db.DashboardStats) healthView {
	if g.Requests == 0 {
		return healthView{Score: 100, Idle: true}
	}
	success := float64(g.Successes) / float64(g.Requests)
	timeouts := float64(g.Timeouts) / float64(g.Requests)
	latency := 1.0
	if p95 := quantile(g.Latency, 0.95); p95 != nil {
		latency = linear(*p95, 30_000, 5_000)
	}
	score := healthWeightSuccess*linear(success, 0.90, 0.995) +
		healthWeightLatency*latency +
		healthWeightTimeout*linear(timeouts, 0.05, 0)
	return healthView{Score: int(math.Round(score))}
}

// linear maps v to [0, 1]: 0 at bad, 1 at good, either order.
func linear(v, bad, good float64) float64 {
	return math.Max(0, math.Min(1, (v-bad)/(good-bad)))
}

func failuresOf(g db.DashboardStats) int64 { return g.Requests - g.Successes }

// ratio is num/den, nil when den is 0 (undefined, not zero).
func ratio(num, den int64) *float64 {
	if den == 0 {
		return nil
	}
	return ptr(float64(num) / float64(den))
}

func avg(sum float64, n int64) *float64 {
	if n == 0 {
		return nil
	}
	return ptr(roundTo(sum/float64(n), 3))
}

func maxOf(v float64, n int64) *float64 {
	if n == 0 {
		return nil
	}
	return &v
}

// quantile reads a sketch; nil when it is empty.
func quantile(s *ddsketch.DDSketch, q float64) *float64 {
	if s == nil {
		return nil
	}
	v, ok := db.SketchQuantile(s, q)
	if !ok {
		return nil
	}
	return ptr(roundTo(v, 3))
}

func deref(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

// costOf is the exact decimal sum; SUM over no rows is NULL, shown as 0.
func costOf(g db.DashboardStats) string {
	if g.CostUSD == "" {
		return "0"
	}
	return g.CostUSD
}

// costFloat is for charts and shares, where float precision is plenty.
func costFloat(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return v
}
