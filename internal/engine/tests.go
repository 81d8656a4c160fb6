package engine

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// testRun is the test webhook of one annotation value. It lives until the endpoint goes, so that a
// reconcile that reads a cached copy older than the status write of its result does not send it again.
type testRun struct {
	value    string
	result   *webhooksv1alpha1.TestResult
	recorded bool
}

// TestState is where the test webhook of one annotation value is.
type TestState int

const (
	// TestUnknown means no test was started for this value.
	TestUnknown TestState = iota
	// TestRunning means the test is queued or in flight.
	TestRunning
	// TestFinished means the result waits to be recorded (TestResult returns it).
	TestFinished
	// TestRecorded means the result is in the status; nothing is left to do for this value.
	TestRecorded
)

// Test returns the state of the endpoint's test for value, and its result once finished.
func (e *Engine) Test(uid types.UID, value string) (TestState, *webhooksv1alpha1.TestResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	run, ok := e.tests[uid]
	switch {
	case !ok || run.value != value:
		return TestUnknown, nil
	case run.recorded:
		return TestRecorded, nil
	case run.result != nil:
		return TestFinished, run.result.DeepCopy()
	}
	return TestRunning, nil
}

// StartTest queues the test webhook of an annotation value on the endpoint's lane, under the same
// bounds and start-time admission as deliveries. It returns false when this value was already started.
func (e *Engine) StartTest(endpoint types.NamespacedName, uid types.UID, value string, maxInFlight int, body func() ([]byte, error), testID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	if run, ok := e.tests[uid]; ok && run.value == value {
		return false
	}
	e.observeLocked(endpoint, uid)
	e.tests[uid] = &testRun{value: value}
	e.enqueueLocked(Attempt{
		Endpoint: endpoint, EndpointUID: uid, DeliveryID: testID, MaxInFlight: maxInFlight, Body: body, testValue: value,
	})
	return true
}

// RecordedTest confirms that the result of the test for value is in the status (or that the test was
// answered there without being sent).
func (e *Engine) RecordedTest(uid types.UID, value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tests[uid] = &testRun{value: value, recorded: true}
}

func (e *Engine) finishTestLocked(uid types.UID, value string, out Outcome) {
	run, ok := e.tests[uid]
	if !ok || run.value != value {
		// The endpoint went, or a newer value replaced this one: nobody waits for the result.
		return
	}
	result := &webhooksv1alpha1.TestResult{RequestedAt: value}
	switch out.Kind {
	case Sent:
		start := metav1.NewTime(out.Result.Start)
		result.Time = &start
		result.StatusCode = int32(out.Result.StatusCode)
		result.Duration = webhooksv1alpha1.AttemptDuration(out.Result.Duration)
		result.Success = out.Result.Success
		result.Error = out.Result.Error
	case EndpointGone:
		result.Error = "not sent: the endpoint was deleted"
	default:
		result.Error = "not sent: " + out.Readiness.Reason + ": " + out.Readiness.Message
	}
	if result.Time == nil {
		now := metav1.NewTime(e.now())
		result.Time = &now
	}
	run.result = result
}
