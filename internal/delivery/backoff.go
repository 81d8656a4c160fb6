package delivery

import (
	"math"
	"time"
)

// JitterFraction is the ± spread applied to every backoff interval, so that deliveries that failed
// together do not retry in lockstep.
const JitterFraction = 0.2

// Backoff returns the wait after the given failed attempt (1 for the first): initial doubled per further
// attempt and capped at max, then spread by ±JitterFraction. unit is a random number in [0, 1); passing it
// in keeps this function deterministic for tests. The result never exceeds max.
func Backoff(attempt int32, initial, maxInterval time.Duration, unit float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	base := float64(initial) * math.Pow(2, float64(attempt-1))
	if base > float64(maxInterval) {
		base = float64(maxInterval)
	}
	d := time.Duration(base * (1 - JitterFraction + 2*JitterFraction*unit))
	return min(d, maxInterval)
}
