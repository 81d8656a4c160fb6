package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AttemptDuration is how the status records how long an attempt took: to the microsecond, so that a
// fast answer (a receiver on the same node answers in well under a millisecond) does not read as zero.
func AttemptDuration(d time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: d.Round(time.Microsecond)}
}
