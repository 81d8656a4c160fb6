package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
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

func FuzzParseRetryAfter(f *testing.F) {
	for _, seed := range []string{"", "0", "120", "-1", "1e3", "Sun, 01 Mar 2026 12:00:30 GMT", "Sun Mar  1 12:00:10 2026", "\x00",
		"99999999999999999999999", "18446744073709551616", "+5", "1.5"} {
		f.Add(seed)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, value string) {
		got, ok := ParseRetryAfter(value, now)
		if got < 0 || got > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, %v]", value, got, maxRetryAfter)
		}
		if !ok && got != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v with ok=false", value, got)
		}
		// delay-seconds of any length is honoured: too many seconds means the cap, never "ignore".
		if trimmed := strings.TrimSpace(value); trimmed != "" && strings.Trim(trimmed, "0123456789") == "" {
			if !ok {
				t.Fatalf("ParseRetryAfter(%q) = not ok for delay-seconds", value)
			}
			if len(strings.TrimLeft(trimmed, "0")) > 20 && got != maxRetryAfter {
				t.Fatalf("ParseRetryAfter(%q) = %v, want the cap %v", value, got, maxRetryAfter)
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
