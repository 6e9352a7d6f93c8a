package db

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestExactSumIsOrderIndependent: the same values added in any order give
// the same, correctly rounded sum, where plain float addition drifts.
func TestExactSumIsOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := make([]float64, 20_000)
	for i := range values {
		values[i] = math.Exp(rng.NormFloat64()*3) * 100 // latencies across 8 orders of magnitude
	}
	values = append(values, 1e16, 1, -1e16) // cancellation a naive sum gets wrong
	exact := new(big.Float).SetPrec(4096)
	for _, v := range values {
		exact.Add(exact, big.NewFloat(v))
	}
	want, _ := exact.Float64()
	var naive []float64
	for range 5 {
		rng.Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
		var s exactSum
		n := 0.0
		for _, v := range values {
			s.add(v)
			n += v
		}
		assert.Equal(t, want, s.value())
		naive = append(naive, n)
	}
	slices.Sort(naive)
	assert.NotEqual(t, naive[0], naive[len(naive)-1], "the naive sums differ by order, or this test proves nothing")
}
