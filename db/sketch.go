package db

import (
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// SketchRelativeAccuracy is the DDSketch accuracy of every latency sketch.
// SPEC §5 allows 1% against percentile_cont; the sketch gets half of it
// because percentile_cont interpolates between neighbouring raw values while
// a sketch answers with one of them, and that gap needs the other half.
const SketchRelativeAccuracy = 0.005

// sketchMapping is shared by every sketch: sketches only merge when their
// mappings are equal, and the logarithmic mapping needs the fewest bins for
// a given accuracy, which keeps the stored encodings small.
var sketchMapping = func() mapping.IndexMapping {
	m, err := mapping.NewLogarithmicMapping(SketchRelativeAccuracy)
	if err != nil {
		panic(err) // only an accuracy outside (0, 1) fails
	}
	return m
}()

// NewLatencySketch returns an empty latency sketch (values in milliseconds).
func NewLatencySketch() *ddsketch.DDSketch {
	return ddsketch.NewDDSketch(sketchMapping, store.NewDenseStore(), store.NewDenseStore())
}

// AddToSketch adds one value. Values the sketch cannot index (NaN, negative,
// beyond ~1e300) are clamped rather than refused: ingest rejects them, so they
// can only come from rows written some other way, and one such row must not
// wedge the collector forever.
func AddToSketch(s *ddsketch.DDSketch, v float64) {
	switch {
	case math.IsNaN(v) || v < 0:
		v = 0
	case v > s.MaxIndexableValue():
		v = s.MaxIndexableValue()
	}
	_ = s.Add(v) // cannot fail: v is now indexable and the count positive
}

// EncodeSketch serialises a sketch in DDSketch's own varint encoding, index
// mapping included. It is several times smaller than the protobuf form (bin
// counts are varfloats, runs of bins are delta-coded), and carrying the
// mapping (17 bytes) makes every encoding self-describing: an empty sketch
// still decodes, and a sketch stored under another accuracy is refused on
// decode instead of being merged wrongly. The output is deterministic, so
// recomputing a minute from the same rows gives identical bytes.
func EncodeSketch(s *ddsketch.DDSketch) []byte {
	var b []byte
	s.Encode(&b, false)
	return b
}

// DecodeSketch parses an encoding made by EncodeSketch.
func DecodeSketch(b []byte) (*ddsketch.DDSketch, error) {
	s := NewLatencySketch()
	if err := s.DecodeAndMergeWith(b); err != nil {
		return nil, fmt.Errorf("decode sketch: %w", err)
	}
	return s, nil
}

// MergeEncodedSketches adds encoded sketches into dst without building an
// intermediate sketch per encoding, which is what dashboards merging
// thousands of minute rows want.
func MergeEncodedSketches(dst *ddsketch.DDSketch, encoded ...[]byte) error {
	for _, b := range encoded {
		if err := dst.DecodeAndMergeWith(b); err != nil {
			return fmt.Errorf("merge encoded sketch: %w", err)
		}
	}
	return nil
}

// MergeSketches adds srcs into dst.
func MergeSketches(dst *ddsketch.DDSketch, srcs ...*ddsketch.DDSketch) error {
	for _, s := range srcs {
		if err := dst.MergeWith(s); err != nil {
			return fmt.Errorf("merge sketch: %w", err)
		}
	}
	return nil
}

// SketchQuantile estimates quantile q (0-1) the way percentile_cont
// computes it: linear interpolation between the order statistics around
// rank q*(n-1). DDSketch's own GetValueAtQuantile returns the one order
// statistic at or below that rank, which in a sparse tail (p99 of a few
// hundred values) can sit several percent from percentile_cont's answer.
// Each of the two statistics read here is within the sketch's 0.5%, and so
// is any value between them. An empty sketch gives false.
func SketchQuantile(s *ddsketch.DDSketch, q float64) (float64, bool) {
	n := s.GetCount()
	if n == 0 || q < 0 || q > 1 {
		return 0, false
	}
	rank := q * (n - 1)
	lo := math.Floor(rank)
	v := valueAtRank(s, lo, n)
	if frac := rank - lo; frac > 0 {
		v += frac * (valueAtRank(s, lo+1, n) - v)
	}
	return v, true
}

// valueAtRank returns the order statistic of 0-based rank k. The sketch
// looks up the first bin whose cumulative count exceeds rank q*(n-1), so
// asking for k+0.5 lands inside k's bin whatever the float rounding.
func valueAtRank(s *ddsketch.DDSketch, k, n float64) float64 {
	q := 1.0
	if k+0.5 < n-1 {
		q = (k + 0.5) / (n - 1)
	}
	v, _ := s.GetValueAtQuantile(q) // q is within [0, 1]
	return v
}
