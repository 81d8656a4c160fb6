package delivery

import (
	"testing"
	"time"
)

func TestFormatDurationKeepsSubMillisecondPrecision(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{0, "0.00ms"},
		{40 * time.Microsecond, "0.04ms"},
		{412 * time.Microsecond, "0.4ms"},
		{3250 * time.Microsecond, "3.2ms"},
		{12 * time.Millisecond, "12ms"},
		{412400 * time.Microsecond, "412ms"},
		{1234 * time.Millisecond, "1.2s"},
		{10 * time.Second, "10.0s"},
		{125 * time.Second, "2m5s"},
	} {
		if got := FormatDuration(tc.in); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCountAgreesInNumber(t *testing.T) {
	for _, tc := range []struct {
		n    int32
		want string
	}{{0, "0 attempts"}, {1, "1 attempt"}, {2, "2 attempts"}} {
		if got := Count(tc.n, "attempt"); got != tc.want {
			t.Errorf("Count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := Count(1, "consecutive failed attempt"); got != "1 consecutive failed attempt" {
		t.Errorf("got %q", got)
	}
}
