package db_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opsflow/opsflow/db"
)

func sketchOf(values ...float64) *ddsketch.DDSketch {
	s := db.NewLatencySketch()
	for _, v := range values {
		db.AddToSketch(s, v)
	}
	return s
}

func TestSketchEncodingRoundTrips(t *testing.T) {
	many := make([]float64, 1000)
	for i := range many {
		many[i] = 0.5 + float64(i)*3.7
	}
	tests := []struct {
		name   string
		values []float64
	}{
		{"empty", nil},
		{"one value", []float64{42}},
		{"zeros and values", []float64{0, 0, 1.5, 300}},
		{"many values", many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sketchOf(tt.values...)
			b := db.EncodeSketch(s)

			got, err := db.DecodeSketch(b)

			require.NoError(t, err)
			assert.Equal(t, float64(len(tt.values)), got.GetCount())
			assert.Equal(t, b, db.EncodeSketch(got), "re-encoding gives the same bytes")
			if len(tt.values) > 0 {
				want, err := s.GetValuesAtQuantiles([]float64{0, 0.5, 0.99, 1})
				require.NoError(t, err)
				have, err := got.GetValuesAtQuantiles([]float64{0, 0.5, 0.99, 1})
				require.NoError(t, err)
				assert.Equal(t, want, have)
			}
		})
	}
}

func TestMergingSketchesEqualsSketchingAllValues(t *testing.T) {
	a, b, c := []float64{1, 2, 3}, []float64{250, 251}, []float64{0, 9000}
	want := db.EncodeSketch(sketchOf(append(append(append([]float64{}, a...), b...), c...)...))

	merged := db.NewLatencySketch()
	require.NoError(t, db.MergeSketches(merged, sketchOf(a...), sketchOf(b...), sketchOf(c...)))
	decoded := db.NewLatencySketch()
	require.NoError(t, db.MergeEncodedSketches(decoded,
		db.EncodeSketch(sketchOf(a...)), db.EncodeSketch(sketchOf(b...)), db.EncodeSketch(sketchOf(c...))))

	assert.Equal(t, want, db.EncodeSketch(merged))
	assert.Equal(t, want, db.EncodeSketch(decoded))
}

func TestSketchOfAnotherAccuracyIsRefused(t *testing.T) {
	other, err := ddsketch.LogUnboundedDenseDDSketch(0.01)
	require.NoError(t, err)
	require.NoError(t, other.Add(10))
	var b []byte
	other.Encode(&b, false)

	_, err = db.DecodeSketch(b)
	require.Error(t, err)
	assert.Error(t, db.MergeEncodedSketches(db.NewLatencySketch(), b))
	assert.Error(t, db.MergeSketches(db.NewLatencySketch(), other))
}

func TestDecodeSketchRefusesGarbage(t *testing.T) {
	_, err := db.DecodeSketch([]byte{0xff, 0x01, 0x02})
	assert.Error(t, err)
}

func TestAddToSketchClampsUntrackableValues(t *testing.T) {
	s := sketchOf(math.NaN(), -5, math.Inf(1), 12)

	assert.Equal(t, float64(4), s.GetCount())
	assert.Equal(t, float64(2), s.GetZeroCount(), "NaN and negatives count as zero")
	maxValue, err := s.GetMaxValue()
	require.NoError(t, err)
	assert.InEpsilon(t, s.MaxIndexableValue(), maxValue, db.SketchRelativeAccuracy)
}

// percentileCont is PostgreSQL's percentile_cont on sorted values.
func percentileCont(sorted []float64, q float64) float64 {
	rank := q * float64(len(sorted)-1)
	lo := math.Floor(rank)
	v := sorted[int(lo)]
	if frac := rank - lo; frac > 0 {
		v += frac * (sorted[int(lo)+1] - v)
	}
	return v
}

// TestSketchQuantile: the interpolated sketch quantile stays within the
// sketch's accuracy of percentile_cont, also in sparse heavy tails where
// the nearest order statistic alone is far off.
func TestSketchQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string]func() float64{
		"lognormal":  func() float64 { return math.Exp(6 + 1.5*rng.NormFloat64()) },
		"uniform":    func() float64 { return 20 + rng.Float64()*3000 },
		"with zeros": func() float64 { return math.Max(0, rng.NormFloat64()*100) },
		"bimodal":    func() float64 { return []float64{40, 120_000}[rng.IntN(2)] * (1 + rng.Float64()/10) },
	}
	for name, gen := range cases {
		for _, n := range []int{1, 2, 7, 100, 513, 20_000} {
			values := make([]float64, n)
			s := db.NewLatencySketch()
			for i := range values {
				values[i] = gen()
				db.AddToSketch(s, values[i])
			}
			slices.Sort(values)
			for _, q := range []float64{0, 0.5, 0.9, 0.95, 0.99, 1} {
				got, ok := db.SketchQuantile(s, q)
				require.True(t, ok)
				want := percentileCont(values, q)
				assert.InDelta(t, want, got, want*db.SketchRelativeAccuracy+1e-9, "%s n=%d q=%v", name, n, q)
			}
		}
	}
	_, ok := db.SketchQuantile(db.NewLatencySketch(), 0.5)
	assert.False(t, ok, "an empty sketch has no quantiles")
}

// TestSketchQuantileInterpolatesLikePercentileCont: on values far apart, a
// plain sketch quantile answers one raw value while percentile_cont
// interpolates; SketchQuantile does as percentile_cont does.
func TestSketchQuantileInterpolatesLikePercentileCont(t *testing.T) {
	s := sketchOf(10, 20, 30, 40, 1000)
	tests := []struct{ q, want float64 }{
		{0, 10}, {0.5, 30}, {0.6, 34}, {0.95, 808}, {0.99, 961.6}, {1, 1000},
	}
	for _, tc := range tests {
		got, ok := db.SketchQuantile(s, tc.q)
		require.True(t, ok)
		assert.InEpsilon(t, tc.want, got, db.SketchRelativeAccuracy, "q=%g", tc.q)
	}
	got, ok := db.SketchQuantile(sketchOf(42), 0.99)
	require.True(t, ok)
	assert.InEpsilon(t, 42, got, db.SketchRelativeAccuracy)
}
