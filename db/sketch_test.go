package db_test

import (
	"math"
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
