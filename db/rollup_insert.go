package db

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// rollupColumns holds rollup rows column by column, so one INSERT ...
// SELECT FROM unnest($1, $2, ...) with bound array parameters stores
// thousands of rows. Bun's INSERT inlines every value, sketches as hex text,
// into the statement: about 80 µs a row on the development machine, most of
// the collector's time on a busy day; bound arrays cost a fraction of that.
type rollupColumns struct {
	grain                           []int16
	ts                              []time.Time
	keys                            []rollupKey
	requests, successes, s4xx, s5xx []int64
	timeouts, input, output, cached []int64
	cost                            []string
	latencySum, latencyMax          []float64
	latencySketch, ttftSketch       [][]byte
	ttftCount                       []int64
	ttftSum, ttftMax                []float64
	peak                            []int64
	withGrain, withPeak             bool
	table, tsColumn                 string
	// dims are the table's key columns after the time column (Dim*
	// names); nil means the full key, tenant, provider and model.
	dims []string
}

// rollupKey is a rollup row's key values; a table stores the ones its dims
// name.
type rollupKey struct {
	Tenant, Provider, Model, APIKey string
}

func (k *rollupKey) get(dim string) string {
	switch dim {
	case DimTenant:
		return k.Tenant
	case DimProvider:
		return k.Provider
	case DimModel:
		return k.Model
	case DimAPIKey:
		return k.APIKey
	}
	panic("rollup key: unknown dimension " + dim)
}

// fullKeyDims are rollup_minute's key columns; apiKeyDims those of the
// api_key rollups.
var (
	fullKeyDims = []string{DimTenant, DimProvider, DimModel}
	apiKeyDims  = []string{DimAPIKey, DimTenant}
)

func (c *rollupColumns) add(grain int16, ts time.Time, key rollupKey, r *RollupCounters, peak int64) {
	c.grain = append(c.grain, grain)
	c.ts = append(c.ts, ts)
	c.keys = append(c.keys, key)
	c.requests, c.successes = append(c.requests, r.Requests), append(c.successes, r.Successes)
	c.s4xx, c.s5xx, c.timeouts = append(c.s4xx, r.Status4xx), append(c.s5xx, r.Status5xx), append(c.timeouts, r.Timeouts)
	c.input, c.output, c.cached = append(c.input, r.InputTokens), append(c.output, r.OutputTokens), append(c.cached, r.CachedTokens)
	c.cost = append(c.cost, r.CostUSD)
	c.latencySum, c.latencyMax = append(c.latencySum, r.LatencySum), append(c.latencyMax, r.LatencyMax)
	c.latencySketch = append(c.latencySketch, r.LatencySketch)
	c.ttftCount, c.ttftSum, c.ttftMax = append(c.ttftCount, r.TTFTCount), append(c.ttftSum, r.TTFTSum), append(c.ttftMax, r.TTFTMax)
	c.ttftSketch = append(c.ttftSketch, r.TTFTSketch)
	c.peak = append(c.peak, peak)
}

// insert stores the rows in one statement.
func (c *rollupColumns) insert(ctx context.Context, idb bun.IDB) error {
	if len(c.ts) == 0 {
		return nil
	}
	ex, err := sqlExecer(idb)
	if err != nil {
		return err
	}
	type col struct {
		name, cast string
		vals       any
	}
	cols := []col{{c.tsColumn, "timestamptz[]", c.ts}}
	dims := c.dims
	if dims == nil {
		dims = fullKeyDims
	}
	for _, dim := range dims {
		vals := make([]string, len(c.keys))
		for i := range c.keys {
			vals[i] = c.keys[i].get(dim)
		}
		cols = append(cols, col{dim, "text[]", vals})
	}
	cols = append(cols, []col{
		{"requests", "int8[]", c.requests}, {"successes", "int8[]", c.successes},
		{"status_4xx", "int8[]", c.s4xx}, {"status_5xx", "int8[]", c.s5xx}, {"timeouts", "int8[]", c.timeouts},
		{"input_tokens", "int8[]", c.input}, {"output_tokens", "int8[]", c.output}, {"cached_tokens", "int8[]", c.cached},
		// Cost travels as decimal text, so it stays exact.
		{"cost_usd", "text[]::numeric[]", c.cost}, {"latency_sum", "float8[]", c.latencySum}, {"latency_max", "float8[]", c.latencyMax},
		{"latency_sketch", "bytea[]", c.latencySketch}, {"ttft_count", "int8[]", c.ttftCount},
		{"ttft_sum", "float8[]", c.ttftSum}, {"ttft_max", "float8[]", c.ttftMax}, {"ttft_sketch", "bytea[]", c.ttftSketch},
	}...)
	if c.withGrain {
		cols = append(cols, col{"grain", "int2[]", c.grain})
	}
	if c.withPeak {
		cols = append(cols, col{"peak_requests", "int8[]", c.peak})
	}
	names := make([]string, len(cols))
	params := make([]string, len(cols))
	args := make([]any, len(cols))
	for i, cl := range cols {
		names[i] = cl.name
		params[i] = fmt.Sprintf("$%d::%s", i+1, cl.cast)
		args[i] = cl.vals
	}
	query := "INSERT INTO " + c.table + " (" + strings.Join(names, ", ") + ") SELECT * FROM unnest(" +
		strings.Join(params, ", ") + ")"
	if _, err := ex.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("insert into %s: %w", c.table, MapError(err))
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// sqlExecer unwraps Bun's handle to database/sql's, which binds parameters
// on the server instead of formatting them into the statement.
func sqlExecer(idb bun.IDB) (execer, error) {
	switch v := idb.(type) {
	case bun.Tx:
		return v.Tx, nil
	case *bun.DB:
		return v.DB, nil
	case bun.Conn:
		return v.Conn, nil
	}
	return nil, fmt.Errorf("unsupported database handle %T", idb)
}
