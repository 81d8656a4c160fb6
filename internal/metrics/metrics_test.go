package metrics

import "testing"

func TestCodeClass(t *testing.T) {
	for code, want := range map[int]string{
		0: "none", 99: "none", 100: "1xx", 199: "1xx", 200: "2xx", 204: "2xx", 301: "3xx",
		429: "4xx", 500: "5xx", 599: "5xx", 600: "none", -1: "none",
	} {
		if got := CodeClass(code); got != want {
			t.Errorf("CodeClass(%d) = %q, want %q", code, got, want)
		}
	}
}
