package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// testRuns tracks test webhooks: one per endpoint and annotation value, sent off the reconcile worker.
type testRuns struct {
	mu   sync.Mutex
	runs map[types.NamespacedName]*testRun
}

type testRun struct {
	value  string
	result *webhooksv1alpha1.TestResult
}

func newTestRuns() *testRuns { return &testRuns{runs: map[types.NamespacedName]*testRun{}} }

// result returns the finished test for this annotation value, if any.
func (t *testRuns) result(key types.NamespacedName, value string) (*webhooksv1alpha1.TestResult, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	run, ok := t.runs[key]
	if !ok || run.value != value || run.result == nil {
		return nil, false
	}
	delete(t.runs, key)
	return run.result, true
}

// start sends the test unless one for this value is already under way, and calls done when it is back.
func (t *testRuns) start(key types.NamespacedName, value string, sender Sender, req delivery.Request, done func()) {
	t.mu.Lock()
	if run, ok := t.runs[key]; ok && run.value == value {
		t.mu.Unlock()
		return
	}
	run := &testRun{value: value}
	t.runs[key] = run
	t.mu.Unlock()

	go func() {
		res := sender.Send(context.Background(), req)
		start := metav1.NewTime(res.Start)
		t.mu.Lock()
		run.result = &webhooksv1alpha1.TestResult{
			RequestedAt: value,
			Time:        &start,
			StatusCode:  int32(res.StatusCode),
			DurationMs:  res.Duration.Milliseconds(),
			Success:     res.Success,
			Error:       res.Error,
		}
		t.mu.Unlock()
		done()
	}()
}

// testRequest builds the sample document.ready request of a test webhook: signed like a real one,
// with a documentId starting test_ and the X-Webhook-Test header.
func testRequest(ep *webhooksv1alpha1.WebhookEndpoint, value string, creds credentials, now time.Time) (delivery.Request, error) {
	sum := sha256.Sum256([]byte(string(ep.UID) + "/" + value))
	id := hex.EncodeToString(sum[:8])
	today := now.UTC().Format(time.DateOnly)
	stamp := now.UTC().Format(time.RFC3339)
	body, err := delivery.Marshal(delivery.Payload{
		Event:      string(webhooksv1alpha1.DocumentReadyEvent),
		Success:    true,
		DocumentID: "test_" + id,
		Status: delivery.Status{
			ExtractionStatus: "INDEXED",
			DocType:          ptr.To("INVOICE"),
			CreatedAt:        stamp,
			UpdatedAt:        stamp,
		},
		Document: &delivery.Document{
			Description:  "Test webhook from webhook-operator",
			TotalAmount:  "0.00",
			DocumentDate: today,
		},
	})
	if err != nil {
		return delivery.Request{}, err
	}
	req := attemptRequest(ep, "whtest_"+id, body, creds)
	req.Test = true
	return req, nil
}
