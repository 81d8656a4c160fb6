package webhookops

import (
	"encoding/json"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// RequestTime is the value of a test or redelivery request annotation: now, to the nanosecond, so that
// every request is a new value and the operator acts on it once.
func RequestTime() string {
	return time.Now().UTC().Format(time.RFC3339Nano)
}

// TestRequestPatch returns the JSON merge patch of a WebhookEndpoint that requests a test webhook,
// identified by requestedAt: the operator records the result in status.lastTest with that requestedAt.
func TestRequestPatch(requestedAt string) ([]byte, error) {
	return AnnotationsPatch(map[string]*string{webhooksv1alpha1.TestRequestedAtAnnotation: &requestedAt})
}

// RedeliveryPatch returns the JSON merge patch of a DocumentEvent that requests its redelivery,
// identified by requestedAt (the operator confirms it in status.lastRedeliveryRequest). scope is
// the value of the redeliver-scope annotation (webhooksv1alpha1.RedeliverScopeFailed restarts only the
// failed deliveries); "" removes a scope left by an earlier request, so that every delivery is sent.
func RedeliveryPatch(requestedAt, scope string) ([]byte, error) {
	values := map[string]*string{
		webhooksv1alpha1.RedeliverRequestedAtAnnotation: &requestedAt,
		webhooksv1alpha1.RedeliverScopeAnnotation:       nil, // absent means all deliveries
	}
	if scope != "" {
		values[webhooksv1alpha1.RedeliverScopeAnnotation] = &scope
	}
	return AnnotationsPatch(values)
}

// AnnotationsPatch returns a JSON merge patch that sets the annotations; a nil value removes one.
func AnnotationsPatch(values map[string]*string) ([]byte, error) {
	if len(values) == 0 {
		return nil, errors.New("no annotations to patch")
	}
	return json.Marshal(map[string]any{"metadata": map[string]any{"annotations": values}})
}

// RecordedDuration shows a duration from the status the way the operator's outputs do, "-" when none
// was recorded (the request was never sent).
func RecordedDuration(d *metav1.Duration) string {
	if d == nil {
		return "-"
	}
	return delivery.FormatDuration(d.Duration)
}
