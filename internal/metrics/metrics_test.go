package metrics

import (
	"slices"
	"strings"
	"testing"

	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

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

type fixedBacklog struct{}

func (fixedBacklog) Backlog() (int, float64)       { return 1, 1 }
func (fixedBacklog) OpenCircuits() int             { return 1 }
func (fixedBacklog) CachedObjects() map[string]int { return map[string]int{"DocumentEvent": 1} }

// Names is what the docs, alert and dashboard checks trust; it must be exactly what the manager serves
// once every metric has a sample.
func TestNamesAreTheServedMetrics(t *testing.T) {
	RecordAttempt(ResultSuccess, 200, 0.01)
	RecordFinished(true, 1)
	RecordTest(true)
	AddRateLimitWait(WaitRateLimit, 1)
	RecordRefused(RefusedTooLarge)
	if err := RegisterBacklog(fixedBacklog{}); err != nil {
		t.Fatal(err)
	}
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "webhook_operator_") {
			served = append(served, f.GetName())
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(Names)), served) {
		t.Errorf("Names = %v, the registry serves %v", Names, served)
	}
}
