package delivery

import (
	"math"
	"testing"
	"time"
)

// almostUnitOne is the largest float64 below 1, the top of the [0, 1) range of unit.
var almostUnitOne = math.Nextafter(1, 0)

func TestBackoffExact(t *testing.T) {
	const (
		initial = 5 * time.Second
		maxI    = time.Hour
	)
	tests := []struct {
		name    string
		attempt int32
		initial time.Duration
		max     time.Duration
		unit    float64
		want    time.Duration
	}{
		{"attempt 1, no jitter", 1, initial, maxI, 0.5, 5 * time.Second},
		{"attempt 2 doubles", 2, initial, maxI, 0.5, 10 * time.Second},
		{"attempt 3 doubles again", 3, initial, maxI, 0.5, 20 * time.Second},
		{"attempt 4", 4, initial, maxI, 0.5, 40 * time.Second},
		{"attempt 10", 10, initial, maxI, 0.5, 2560 * time.Second},
		{"attempt 11 is capped (5s*1024 > 1h)", 11, initial, maxI, 0.5, time.Hour},
		{"attempt 15 is capped", 15, initial, maxI, 0.5, time.Hour},
		{"attempt 0 is treated as 1", 0, initial, maxI, 0.5, 5 * time.Second},
		{"negative attempt is treated as 1", -3, initial, maxI, 0.5, 5 * time.Second},
		{"min int32 attempt is treated as 1", math.MinInt32, initial, maxI, 0.5, 5 * time.Second},
		{"attempt 1000 is max", 1000, initial, maxI, 0.5, time.Hour},
		{"attempt max int32 is max", math.MaxInt32, initial, maxI, 0.5, time.Hour},
		{"initial above max is capped on attempt 1", 1, 2 * time.Hour, maxI, 0.5, time.Hour},
		{"millisecond initial", 3, 10 * time.Millisecond, maxI, 0.5, 40 * time.Millisecond},
		{"max equal to initial", 7, time.Second, time.Second, 0.5, time.Second},

		{"jitter low edge, attempt 1", 1, initial, maxI, 0, 4 * time.Second},
		{"jitter low edge, attempt 3", 3, initial, maxI, 0, 16 * time.Second},
		{"jitter low edge when capped is 0.8 max", 20, initial, maxI, 0, 48 * time.Minute},
		{"jitter low edge, attempt 1000", 1000, initial, maxI, 0, 48 * time.Minute},
		{"jitter low edge, attempt 0", 0, initial, maxI, 0, 4 * time.Second},
		{"jitter quarter", 1, initial, maxI, 0.25, 4500 * time.Millisecond},
		{"jitter three quarters", 2, initial, maxI, 0.75, 11 * time.Second},
		{"jitter high edge when capped never exceeds max", 20, initial, maxI, almostUnitOne, time.Hour},
		{"jitter high edge just below cap is clamped to max", 7, 50 * time.Second, maxI, almostUnitOne, time.Hour}, // 3200s*1.2 > 1h
		{"jitter high edge below cap is not clamped", 10, initial, maxI, almostUnitOne, 3072 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Backoff(tc.attempt, tc.initial, tc.max, tc.unit)
			// Allow one nanosecond for float rounding of the jitter factor.
			if diff := got - tc.want; diff < -1 || diff > 1 {
				t.Fatalf("Backoff(%d, %s, %s, %v) = %s, want %s", tc.attempt, tc.initial, tc.max, tc.unit, got, tc.want)
			}
		})
	}
}

// With unit 0.5 the jitter factor is exactly 1, so the result must be exact to the nanosecond.
func TestBackoffNoJitterIsExact(t *testing.T) {
	for attempt := int32(1); attempt <= 10; attempt++ {
		want := time.Second << (attempt - 1)
		if got := Backoff(attempt, time.Second, time.Hour, 0.5); got != want {
			t.Fatalf("attempt %d: got %s, want exactly %s", attempt, got, want)
		}
	}
}

func TestBackoffJitterHighEdge(t *testing.T) {
	tests := []struct {
		name    string
		attempt int32
		unit    float64
		base    time.Duration
	}{
		{"unit 0.999, attempt 1", 1, 0.999, 5 * time.Second},
		{"unit just below 1, attempt 1", 1, almostUnitOne, 5 * time.Second},
		{"unit just below 1, attempt 4", 4, almostUnitOne, 40 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Backoff(tc.attempt, 5*time.Second, time.Hour, tc.unit)
			lo := time.Duration(float64(tc.base) * 1.1996)
			hi := time.Duration(float64(tc.base) * 1.2)
			if got < lo || got > hi {
				t.Fatalf("got %s, want within [%s, %s] (≈1.2×%s)", got, lo, hi, tc.base)
			}
		})
	}
}

// Properties over a grid: bounds, cap, monotonic in attempt and in unit, never negative.
func TestBackoffBounds(t *testing.T) {
	policies := []struct {
		initial, max time.Duration
	}{
		{5 * time.Second, time.Hour},
		{10 * time.Millisecond, 10 * time.Millisecond},
		{10 * time.Millisecond, 24 * time.Hour},
		{time.Minute, 10 * time.Second},
		{1, 3},
	}
	units := []float64{0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, almostUnitOne}
	attempts := []int32{math.MinInt32, -1, 0, 1, 2, 3, 5, 8, 13, 21, 31, 32, 33, 62, 63, 64, 65, 100, 1000, 1024, 1025, 1 << 20, math.MaxInt32}
	for _, pol := range policies {
		for _, u := range units {
			prev := time.Duration(-1)
			for _, a := range attempts {
				got := Backoff(a, pol.initial, pol.max, u)
				if got > pol.max {
					t.Fatalf("Backoff(%d, %s, %s, %v) = %s exceeds max", a, pol.initial, pol.max, u, got)
				}
				base := float64(pol.initial) * math.Pow(2, float64(max(a, 1)-1))
				base = math.Min(base, float64(pol.max))
				lo := time.Duration(math.Floor(base*(1-JitterFraction))) - 1
				hi := time.Duration(math.Min(math.Ceil(base*(1+JitterFraction)), float64(pol.max))) + 1
				if got < lo || got > hi || got < 0 {
					t.Fatalf("Backoff(%d, %s, %s, %v) = %s, want within [%s, %s]", a, pol.initial, pol.max, u, got, lo, hi)
				}
				if got < prev {
					t.Fatalf("Backoff(%d, ..., %v) = %s decreased from %s at the previous attempt", a, u, got, prev)
				}
				prev = got
			}
		}
		for _, a := range attempts {
			prev := time.Duration(-1)
			for _, u := range units {
				got := Backoff(a, pol.initial, pol.max, u)
				if got < prev {
					t.Fatalf("Backoff(%d, %s, %s, %v) = %s decreased from %s for a smaller unit", a, pol.initial, pol.max, u, got, prev)
				}
				prev = got
			}
		}
	}
}
