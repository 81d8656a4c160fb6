package delivery

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"absent", "", 0, false},
		{"seconds", "120", 2 * time.Minute, true},
		{"zero seconds", "0", 0, true},
		{"padded seconds", " 7 ", 7 * time.Second, true},
		{"huge seconds are capped", "99999999999999999", maxRetryAfter, true},
		{"cap exactly", "86400", maxRetryAfter, true},
		{"one over the cap", "86401", maxRetryAfter, true},
		{"max uint64 seconds are capped", "18446744073709551615", maxRetryAfter, true},
		{"seconds over uint64 are capped", "18446744073709551616", maxRetryAfter, true},
		{"seconds far over uint64 are capped", "99999999999999999999999", maxRetryAfter, true},
		{"a thousand digits are capped", strings.Repeat("9", 1000), maxRetryAfter, true},
		{"leading zeros", "000000000000000000000000000042", 42 * time.Second, true},
		{"negative seconds", "-5", 0, false},
		{"plus sign", "+5", 0, false},
		{"huge negative seconds", "-99999999999999999999999", 0, false},
		{"huge with a plus sign", "+99999999999999999999999", 0, false},
		{"space inside", "1 5", 0, false},
		{"space inside huge", "99999999999 999999999999", 0, false},
		{"fractional seconds", "1.5", 0, false},
		{"huge fractional seconds", "99999999999999999999999.5", 0, false},
		{"exponent", "1e3", 0, false},
		{"hex", "0x10", 0, false},
		{"non-ASCII digits", "١٢", 0, false},
		{"HTTP date in the future", "Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"HTTP date in the past", "Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"RFC 850 date", "Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true},
		{"asctime date", "Sun Mar  1 12:00:10 2026", 10 * time.Second, true},
		{"far future date is capped", "Fri, 01 Mar 2030 12:00:00 GMT", maxRetryAfter, true},
		{"garbage", "soon", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.value, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// fuzzNow is the injected clock of the fuzz targets: a whole second, as HTTP dates are.
var fuzzNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// FuzzParseRetryAfter checks any header value against what it must mean: delay-seconds exactly (capped),
// never a negative or fractional delay, and a parsed delay that reads the same when written back as
// delay-seconds or as an HTTP date.
func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "120", "-1", "1e3", "Sun, 01 Mar 2026 12:00:30 GMT", "Sun Mar  1 12:00:10 2026", "\x00",
		"99999999999999999999999", "18446744073709551616", "+5", "1.5", "Sunday, 01-Mar-26 12:01:00 GMT"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, ok := ParseRetryAfter(value, fuzzNow)
		if !ok {
			if got != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v with ok=false", value, got)
			}
			if seconds, isDelaySeconds := delaySeconds(value); isDelaySeconds {
				t.Fatalf("ParseRetryAfter(%q) = not ok for delay-seconds %v", value, seconds)
			}
			return
		}
		if got < 0 || got > maxRetryAfter || got%time.Second != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, want whole seconds in [0, %v]", value, got, maxRetryAfter)
		}
		if want, isDelaySeconds := delaySeconds(value); isDelaySeconds && got != want {
			t.Fatalf("ParseRetryAfter(%q) = %v, want %v", value, got, want)
		}
		for _, again := range []string{strconv.FormatInt(int64(got/time.Second), 10), fuzzNow.Add(got).Format(http.TimeFormat)} {
			if reparsed, ok := ParseRetryAfter(again, fuzzNow); !ok || reparsed != got {
				t.Fatalf("ParseRetryAfter(%q) = %v, but its rewrite %q parses to %v, %v", value, got, again, reparsed, ok)
			}
		}
	})
}

// delaySeconds is the reference reading of a delay-seconds value (1*DIGIT, of any length, capped),
// computed with big integers rather than the parser's overflow handling.
func delaySeconds(value string) (time.Duration, bool) {
	trimmed := strings.TrimSpace(value)
	if trimmed == "" || strings.Trim(trimmed, "0123456789") != "" {
		return 0, false
	}
	seconds, _ := new(big.Int).SetString(trimmed, 10)
	if seconds.Cmp(big.NewInt(int64(maxRetryAfter/time.Second))) > 0 {
		return maxRetryAfter, true
	}
	return time.Duration(seconds.Int64()) * time.Second, true
}

// FuzzParseRetryAfterDate writes a date some seconds from now in each HTTP-date form a receiver may send
// and checks that it parses to exactly that delay: 0 for the past, the cap for the far future.
func FuzzParseRetryAfterDate(f *testing.F) {
	for _, seed := range []int64{0, 1, 30, -1, -3600, 86400, 86401, -86401} {
		f.Add(seed)
	}
	// Within 40 years of fuzzNow, so RFC 850's two-digit year reads back as the same year.
	const bound = 40 * 365 * 24 * 3600
	f.Fuzz(func(t *testing.T, offsetSeconds int64) {
		offset := time.Duration(offsetSeconds%bound) * time.Second
		want := min(max(offset, 0), maxRetryAfter)
		for _, layout := range []string{http.TimeFormat, "Monday, 02-Jan-06 15:04:05 GMT", time.ANSIC} {
			value := fuzzNow.Add(offset).Format(layout)
			if got, ok := ParseRetryAfter(value, fuzzNow); !ok || got != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v (%v from now)", value, got, ok, want, offset)
			}
		}
	})
}

func TestSendReadsRetryAfterOnlyWhenThrottled(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		status int
		header string
		want   time.Duration
	}{
		{http.StatusTooManyRequests, "30", 30 * time.Second},
		{http.StatusServiceUnavailable, "Sun, 01 Mar 2026 12:01:00 GMT", time.Minute},
		{http.StatusServiceUnavailable, "", 0},
		{http.StatusInternalServerError, "30", 0},
		{http.StatusOK, "30", 0},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if tt.header != "" {
				w.Header().Set("Retry-After", tt.header)
			}
			w.WriteHeader(tt.status)
		}))
		res := NewSender(WithClock(func() time.Time { return now })).Send(context.Background(),
			Request{URL: srv.URL, Body: []byte(`{}`), ID: "id", Timeout: time.Second})
		srv.Close()
		if res.StatusCode != tt.status || res.RetryAfter != tt.want {
			t.Errorf("status %d Retry-After %q: got status %d RetryAfter %v, want %v",
				tt.status, tt.header, res.StatusCode, res.RetryAfter, tt.want)
		}
	}
}
