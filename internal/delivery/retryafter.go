package delivery

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds what a receiver can ask for, before the endpoint's own maxInterval cap.
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header value, either delay-seconds or an HTTP date, relative to
// now. It reports false for an absent or malformed value. A date in the past means "retry now" (0).
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if isDigits(value) {
		// delay-seconds is 1*DIGIT, of any length: a value that overflows uint64 only fails with
		// strconv.ErrRange, and is as much over the cap as any other huge value.
		secs, err := strconv.ParseUint(value, 10, 64)
		if err != nil || secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	return min(max(at.Sub(now), 0), maxRetryAfter), true
}

// isDigits reports whether s is one or more ASCII digits: no sign, space, decimal point or exponent.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// honoursRetryAfter lists the statuses whose Retry-After the sender reads: the receiver is throttling
// (429) or temporarily down (503).
func honoursRetryAfter(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}
