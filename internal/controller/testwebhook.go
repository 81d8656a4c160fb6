package controller

import (
	"crypto/sha256"
	"encoding/hex"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/payload"
)

// reconcileTest decides what the test-requested-at annotation asks of the endpoint reconcile: nothing,
// a result to record in status.lastTest, or a test to start in the engine. A test runs once per value.
func (r *WebhookEndpointReconciler) reconcileTest(s *endpointScope) {
	ep := s.ep
	value := ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]
	if value == "" || (ep.Status.LastTest != nil && ep.Status.LastTest.RequestedAt == value) {
		return
	}
	switch state, result := r.shared.engine.Test(ep.UID, value); state {
	case engine.TestRecorded, engine.TestRunning:
		// Running, or recorded by a status write that this (older) cached copy does not show yet.
		return
	case engine.TestFinished:
		result.Error = delivery.Truncate(result.Error, webhooksv1alpha1.MaxDeliveryErrorLength)
		s.recordTest(result)
		return
	}
	if !s.readiness.Ready && s.readiness.Reason != webhooksv1alpha1.CircuitOpenReason {
		// A test is a diagnosis: it goes out even with the circuit open, but never unsigned or to a
		// blocked or invalid URL, nor while the endpoint is suspended.
		now := metav1.NewTime(r.shared.clock.Now())
		s.recordTest(&webhooksv1alpha1.TestResult{RequestedAt: value, Time: &now, Error: delivery.Truncate(
			"not sent: "+s.readiness.Reason+": "+s.readiness.Message, webhooksv1alpha1.MaxDeliveryErrorLength)})
		return
	}
	id := testID(ep, value)
	now := r.shared.clock.Now()
	r.shared.engine.StartTest(keyOf(ep), ep.UID, value, ep.GetMaxInFlight(),
		func() ([]byte, error) { return payload.TestSample(now, id) }, "whtest_"+id)
}

// testID is the test's id: the same for one endpoint and annotation value, so receivers can tell a
// repeated test apart from a new one.
func testID(ep *webhooksv1alpha1.WebhookEndpoint, value string) string {
	sum := sha256.Sum256([]byte(string(ep.UID) + "/" + value))
	return hex.EncodeToString(sum[:8])
}
