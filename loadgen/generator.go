// Package loadgen produces realistic synthetic LLM-gateway traffic: skewed
// tenants, several providers and models with list prices, log-normal
// latencies, streaming, rate limits, upstream failures, timeouts, incidents
// and late-arriving events. The same seed gives the same events, so tests and
// benchmarks can rely on it; Run sends the traffic to an opsflow API.
package loadgen

import (
	"iter"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Event is one gateway request log entry in the ingest API's JSON shape.
type Event struct {
	TS              time.Time `json:"ts"`
	RequestID       string    `json:"request_id"`
	Tenant          string    `json:"tenant"`
	APIKey          string    `json:"api_key"`
	UpstreamAccount string    `json:"upstream_account"`
	Provider        string    `json:"provider"`
	Model           string    `json:"model"`
	Endpoint        string    `json:"endpoint"`
	StatusCode      int       `json:"status_code"`
	LatencyMS       float64   `json:"latency_ms"`
	TTFTMS          float64   `json:"ttft_ms,omitempty"`
	InputTokens     int64     `json:"input_tokens"`
	OutputTokens    int64     `json:"output_tokens"`
	CachedTokens    int64     `json:"cached_tokens"`
	CostUSD         float64   `json:"cost_usd"`
	Stream          bool      `json:"stream"`
	ErrorType       string    `json:"error_type,omitempty"`
	ErrorMessage    string    `json:"error_message,omitempty"`
	ClientIP        string    `json:"client_ip"`
}

// DefaultLateFraction is the share of events that arrive late by default.
const DefaultLateFraction = 0.01

// Options shape the simulated gateway. Zero values give the defaults.
type Options struct {
	// Tenants is the number of tenants (default 30).
	Tenants int
	// Providers takes the most popular providers first (default and most:
	// all 7).
	Providers int
	// Models is the total number of models, spread evenly over the
	// providers; beyond a provider's catalog, dated snapshots of its models
	// are added. Default: every catalog model of the chosen providers (3-6
	// each). Fewer models than providers leaves some providers out.
	Models int
	// LateFraction is the share of events stamped minutes to an hour in the
	// past. Zero means DefaultLateFraction; negative means none.
	LateFraction float64
}

// Generator produces events. It is not safe for concurrent use.
type Generator struct {
	rng          *rand.Rand
	seed         uint64
	seq          uint64
	lateFraction float64
	providers    []provider
	tenants      []tenant
	tenantCDF    []float64
	// last is where the previous Batch ended.
	last time.Time
}

type tenant struct {
	name     string
	keys     []string
	keyCDF   []float64
	ips      []string
	routes   []route
	routeCDF []float64
}

type route struct{ provider, model int }

// New builds a generator whose tenants, their preferences and every event
// follow from seed.
func New(seed int64, opts Options) *Generator {
	g := &Generator{
		rng:          rand.New(rand.NewPCG(uint64(seed), 0x6f707366_6c6f7721)),
		seed:         mix(uint64(seed)),
		lateFraction: opts.LateFraction,
	}
	switch {
	case g.lateFraction == 0:
		g.lateFraction = DefaultLateFraction
	case g.lateFraction < 0:
		g.lateFraction = 0
	}
	g.providers = selectProviders(opts.Providers, opts.Models)
	tenants := opts.Tenants
	if tenants <= 0 {
		tenants = 30
	}
	g.buildTenants(tenants)
	return g
}

// selectProviders takes the n most popular providers and gives them
// models models in all.
func selectProviders(n, models int) []provider {
	if n <= 0 || n > len(catalog) {
		n = len(catalog)
	}
	chosen := slices.Clone(catalog[:n])
	if models <= 0 {
		return chosen
	}
	var out []provider
	for i, p := range chosen {
		count := models / n
		if i < models%n {
			count++
		}
		if count == 0 {
			continue
		}
		p.models = resizeModels(p.models, count)
		out = append(out, p)
	}
	return out
}

// resizeModels keeps the count most popular models, or adds dated snapshots
// of the catalog's models when more are wanted.
func resizeModels(catalogModels []model, count int) []model {
	sorted := slices.Clone(catalogModels)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].weight > sorted[j].weight })
	if count <= len(sorted) {
		return sorted[:count]
	}
	out := sorted
	for i := len(sorted); i < count; i++ {
		m := sorted[i%len(sorted)]
		m.name += "-" + snapshotDate(i/len(sorted))
		m.weight /= float64(1 + i/len(sorted))
		out = append(out, m)
	}
	return out
}

func snapshotDate(generation int) string {
	return time.Date(2025, time.Month(1+generation%12), 1, 0, 0, 0, 0, time.UTC).AddDate(generation/12, 0, 0).Format("2006-01")
}

func (g *Generator) buildTenants(n int) {
	names := slices.Clone(tenantNames)
	g.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	weights := make([]float64, n)
	g.tenants = make([]tenant, n)
	for i := range n {
		name := names[i%len(names)]
		if i >= len(names) {
			name += "-" + strconv.Itoa(i/len(names)+1)
		}
		// Zipf-like: a few tenants send most of the traffic.
		weights[i] = 1 / math.Pow(float64(i+1), 1.07)
		g.tenants[i] = g.newTenant(name)
	}
	g.tenantCDF = cdf(weights)
}

func (g *Generator) newTenant(name string) tenant {
	t := tenant{name: name}
	nkeys := 2 + g.rng.IntN(4)
	keyWeights := make([]float64, nkeys)
	for k := range nkeys {
		t.keys = append(t.keys, name+"-"+keyNames[k])
		keyWeights[k] = 1 / math.Pow(float64(k+1), 1.5)
	}
	t.keyCDF = cdf(keyWeights)
	for range 1 + g.rng.IntN(3) {
		t.ips = append(t.ips, g.clientIP())
	}
	t.routes, t.routeCDF = g.tenantRoutes()
	return t
}

// tenantRoutes picks the providers a tenant uses (two or more, popular ones
// more likely) and weights their models by popularity.
func (g *Generator) tenantRoutes() ([]route, []float64) {
	np := len(g.providers)
	used := min(np, 2+g.rng.IntN(max(1, np-1)))
	// Weighted sampling without replacement (Efraimidis-Spirakis): sort by
	// u^(1/weight) and keep the first ones.
	keys := make([]float64, np)
	for p := range np {
		keys[p] = math.Pow(g.rng.Float64(), 1/g.providers[p].weight)
	}
	order := make([]int, np)
	for p := range order {
		order[p] = p
	}
	sort.SliceStable(order, func(i, j int) bool { return keys[order[i]] > keys[order[j]] })
	var routes []route
	var weights []float64
	for _, p := range order[:used] {
		pref := g.providers[p].weight * (0.3 + g.rng.Float64())
		for m, mod := range g.providers[p].models {
			routes = append(routes, route{provider: p, model: m})
			weights = append(weights, pref*mod.weight)
		}
	}
	return routes, cdf(weights)
}

// clientIP draws an address from the documentation ranges, so generated
// data never names a real host.
func (g *Generator) clientIP() string {
	if g.rng.Float64() < 0.1 {
		return "2001:db8::" + strconv.FormatUint(uint64(g.rng.IntN(0xffff)+1), 16)
	}
	prefixes := []string{"192.0.2.", "198.51.100.", "203.0.113."}
	return prefixes[g.rng.IntN(len(prefixes))] + strconv.Itoa(1+g.rng.IntN(254))
}

// Next returns the event of a request received at ts; a late one is stamped
// earlier than ts, as a gateway flushing a backlog would.
func (g *Generator) Next(ts time.Time) Event {
	ts = g.arrival(ts).UTC()
	t := &g.tenants[pick(g.rng, g.tenantCDF)]
	r := t.routes[pick(g.rng, t.routeCDF)]
	p := &g.providers[r.provider]
	m := &p.models[r.model]
	g.seq++
	e := Event{
		TS:              ts,
		RequestID:       g.requestID(),
		Tenant:          t.name,
		APIKey:          t.keys[pick(g.rng, t.keyCDF)],
		UpstreamAccount: p.accounts[g.rng.IntN(len(p.accounts))],
		Provider:        p.name,
		Model:           m.name,
		Endpoint:        g.endpoint(p, m),
		ClientIP:        t.ips[g.rng.IntN(len(t.ips))],
		Stream:          !m.embedding && g.rng.Float64() < 0.65,
	}
	deg := g.degradation(ts, r.provider)
	if failure, ok := g.failure(p, deg); ok {
		g.fail(&e, failure, deg)
		return e
	}
	g.complete(&e, m, deg)
	return e
}

// Batch returns n events spread evenly over the time since the previous
// Batch ended (the second before now, the first time), oldest first.
func (g *Generator) Batch(n int, now time.Time) []Event {
	from := g.last
	if from.IsZero() || !from.Before(now) {
		from = now.Add(-time.Second)
	}
	step := now.Sub(from) / time.Duration(max(n, 1))
	events := make([]Event, n)
	for i := range events {
		events[i] = g.Next(from.Add(step * time.Duration(i+1)))
	}
	g.last = now
	return events
}

// Over yields n events received evenly over [from, to), for filling a
// database with a day of traffic without holding it in memory.
func (g *Generator) Over(from, to time.Time, n int) iter.Seq[Event] {
	return func(yield func(Event) bool) {
		step := float64(to.Sub(from)) / float64(max(n, 1))
		for i := range n {
			if !yield(g.Next(from.Add(time.Duration(step * float64(i))))) {
				return
			}
		}
	}
}

// arrival moves a late event's timestamp 2 to 60 minutes into the past,
// mostly by a few minutes.
func (g *Generator) arrival(ts time.Time) time.Time {
	if g.rng.Float64() >= g.lateFraction {
		return ts
	}
	lateness := 2*time.Minute + time.Duration(math.Min(g.rng.ExpFloat64()*10, 58)*float64(time.Minute))
	return ts.Add(-lateness)
}

// requestID is unique within a generator: mix is a bijection, so distinct
// sequence numbers give distinct IDs.
func (g *Generator) requestID() string {
	const hex = "0123456789abcdef"
	buf := []byte("req_0000000000000000")
	id := mix(g.seed + g.seq)
	for i := len(buf) - 1; i >= 4; i-- {
		buf[i] = hex[id&0xf]
		id >>= 4
	}
	return string(buf)
}

func (g *Generator) endpoint(p *provider, m *model) string {
	if m.embedding {
		return embeddings
	}
	if g.rng.Float64() < 0.3 {
		return p.nativeEndpoint
	}
	return chatCompletions
}

// failure decides whether the request fails and how.
func (g *Generator) failure(p *provider, deg degradation) (upstreamError, bool) {
	u := g.rng.Float64()
	for _, c := range []struct {
		rate   float64
		errors []upstreamError
	}{
		{rateUnauthorized, clientErrors[2:]},
		{rateBadRequest, clientErrors[:2]},
		{p.rateLimited + deg.rateLimited, p.rateLimits},
		{p.serverError + deg.serverError, p.serverErrors},
		{p.timeout + deg.timeout, []upstreamError{gatewayTimeout}},
	} {
		if u < c.rate {
			return c.errors[g.rng.IntN(len(c.errors))], true
		}
		u -= c.rate
	}
	return upstreamError{}, false
}

// fail fills a failed request: nothing billed, latency typical of the
// failure (a timeout waits for the full bound).
func (g *Generator) fail(e *Event, f upstreamError, deg degradation) {
	e.StatusCode, e.ErrorType, e.ErrorMessage = f.status, f.errType, f.message
	if f.errType == "timeout" {
		e.LatencyMS = f.medianMS + float64(g.rng.IntN(25))
		return
	}
	e.LatencyMS = round1(math.Min(g.logNormal(f.medianMS*deg.latency, 0.6), timeoutMS-1))
}

// complete plays a request the upstream accepted: it succeeds unless the
// generation outlasts the gateway's timeout.
func (g *Generator) complete(e *Event, m *model, deg degradation) {
	if m.embedding {
		e.StatusCode = 200
		e.InputTokens = g.tokens(300, 1.0, 8191)
		e.LatencyMS = round1(math.Min(g.logNormal(m.ttftMS*deg.latency, 0.4), timeoutMS-1))
		e.CostUSD = cost(m.price, e.InputTokens, 0, 0)
		return
	}
	input := g.tokens(1200, 1.1, 200_000)
	output := g.tokens(m.outputMedian, 0.9, 32_768)
	var cached int64
	if m.price.Cached > 0 && g.rng.Float64() < 0.35 {
		cached = int64(float64(input) * (0.3 + 0.65*g.rng.Float64()))
	}
	ttft := g.logNormal(m.ttftMS*deg.latency, 0.45)
	generation := float64(output) / g.logNormal(m.tokensPerSec/deg.latency, 0.25) * 1000
	latency := round1(ttft + generation + 2 + 6*g.rng.Float64())
	if g.rng.Float64() < 0.005 {
		// A slow tail: queueing upstream, retries inside the provider.
		latency = round1(latency * (3 + 5*g.rng.Float64()))
	}
	if latency >= timeoutMS {
		g.fail(e, gatewayTimeout, deg)
		return
	}
	e.StatusCode, e.LatencyMS = 200, latency
	e.InputTokens, e.OutputTokens, e.CachedTokens = input, output, cached
	if e.Stream {
		e.TTFTMS = round1(math.Min(ttft, latency))
	}
	e.CostUSD = cost(m.price, input, output, cached)
}

// cost prices a request: cached prompt tokens at the cache price, the rest
// of the prompt at the input price, rounded to a nano-dollar.
func cost(p Price, input, output, cached int64) float64 {
	usd := (float64(input-cached)*p.Input + float64(cached)*p.Cached + float64(output)*p.Output) / 1e6
	return math.Round(usd*1e9) / 1e9
}

func (g *Generator) tokens(median, sigma float64, limit int64) int64 {
	return min(max(int64(g.logNormal(median, sigma)), 1), limit)
}

func (g *Generator) logNormal(median, sigma float64) float64 {
	return median * math.Exp(sigma*g.rng.NormFloat64())
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// degradation is how much worse a provider is doing at some moment.
type degradation struct {
	rateLimited, serverError, timeout float64
	latency                           float64
}

var healthy = degradation{latency: 1}

// degradation reports the incident hitting provider p at ts, if any. About
// one hour in three has a 5-15 minute incident on one provider; it depends
// only on the seed and the time, so bulk and live generation agree.
func (g *Generator) degradation(ts time.Time, p int) degradation {
	hour := ts.Unix() / 3600
	h := mix(g.seed ^ uint64(hour)*0x9e3779b97f4a7c15)
	if h%100 >= 35 || int((h>>8)%uint64(len(g.providers))) != p {
		return healthy
	}
	start := time.Duration((h>>16)%50) * time.Minute
	length := time.Duration(5+(h>>24)%11) * time.Minute
	offset := time.Duration(ts.Unix()-hour*3600) * time.Second
	if offset < start || offset >= start+length {
		return healthy
	}
	return degradation{rateLimited: 0.05, serverError: 0.2, timeout: 0.03, latency: 2.5}
}

// mix is splitmix64's finaliser: a bijection that scrambles bits.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// cdf turns weights into a cumulative distribution normalised to 1.
func cdf(weights []float64) []float64 {
	out := make([]float64, len(weights))
	var sum float64
	for i, w := range weights {
		sum += w
		out[i] = sum
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

func pick(rng *rand.Rand, cdf []float64) int {
	return min(sort.SearchFloat64s(cdf, rng.Float64()), len(cdf)-1)
}
