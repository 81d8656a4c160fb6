package delivery

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Count shows a number of things in messages people read: "1 attempt", "3 attempts", "0 attempts".
func Count[N ~int | ~int32 | ~int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// FormatDuration shows a measured duration the way every output of the operator and the plugin does:
// fast answers keep their sub-millisecond precision ("0.4ms", "0.05ms"), slower ones lose digits nobody
// reads ("412ms", "1.2s", "2m5s").
func FormatDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d < 100*time.Microsecond:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}

// Printable makes text that a receiver controls safe to store in a status and to print on a terminal or
// a page: valid UTF-8 ("?" for invalid bytes), with C0 and C1 control characters (terminals act on
// them: U+009B starts an escape sequence) and the bidirectional embeddings, overrides and isolates
// (U+202A-U+202E, U+2066-U+2069, which reorder what is shown) replaced by spaces.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r >= 0x7f && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
