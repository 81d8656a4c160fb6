package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

func TestTestRequestsAnnotation(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")

	before := time.Now().Add(-time.Second)
	r := kubectlWebhook(t, "", "test", "orders", "-n", ns)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "test webhook requested for webhookendpoint/orders") {
		t.Errorf("unexpected output: %s", r)
	}
	value := getEndpoint(t, ns, "orders").Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]
	at, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		t.Fatalf("annotation %q is not RFC 3339: %v", value, err)
	}
	if at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("annotation %s is not the time of the request", value)
	}
	if !strings.Contains(r.stdout, value) {
		t.Errorf("output does not show the requested-at value %s", value)
	}

	// A second request uses a new value, so the operator runs the test again.
	mustSucceed(t, kubectlWebhook(t, "", "test", "orders", "-n", ns))
	if again := getEndpoint(t, ns, "orders").Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]; again == value {
		t.Errorf("second request reused the annotation value %s", value)
	}
}

func TestTestNotFound(t *testing.T) {
	ns := newNamespace(t)
	mustFail(t, kubectlWebhook(t, "", "test", "missing", "-n", ns), `webhookendpoint "missing" not found`)
}

// playOperator waits for a new test request on the endpoint and records result for it, as the
// operator's test runner would.
func playOperator(t *testing.T, ns, name string, result webhooksv1alpha1.TestResult) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		ctx := context.Background()
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			ep := &webhooksv1alpha1.WebhookEndpoint{}
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil {
				return false, err
			}
			requested := ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]
			if requested == "" || (ep.Status.LastTest != nil && ep.Status.LastTest.RequestedAt == requested) {
				return false, nil
			}
			before := ep.DeepCopy()
			r := result
			r.RequestedAt = requested
			r.Time = &metav1.Time{Time: time.Now()}
			ep.Status.LastTest = &r
			return true, k.Status().Patch(ctx, ep, client.MergeFrom(before))
		})
		if err != nil {
			t.Errorf("simulated operator: %v", err)
		}
	}()
}

func TestTestWaitSuccess(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	playOperator(t, ns, "orders", webhooksv1alpha1.TestResult{StatusCode: 200, Duration: webhooksv1alpha1.AttemptDuration(420 * time.Microsecond), Success: true})

	r := kubectlWebhook(t, "", "test", "orders", "-n", ns, "--wait", "--timeout", "30s")
	mustSucceed(t, r)
	for _, want := range []string{"webhookendpoint/orders: test webhook succeeded", "status code: 200", "duration:    0.4ms", "success:     true"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %s", want, r)
		}
	}
	if strings.Contains(r.stdout, "error:") {
		t.Errorf("a successful test printed an error line: %s", r)
	}
}

func TestTestWaitFailure(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	playOperator(t, ns, "orders", webhooksv1alpha1.TestResult{
		StatusCode: 503, Duration: webhooksv1alpha1.AttemptDuration(1500 * time.Millisecond), Error: "receiver answered 503 Service Unavailable",
	})

	r := kubectlWebhook(t, "", "test", "orders", "-n", ns, "--wait")
	if r.code != 1 {
		t.Fatalf("a failed test must exit 1, got %s", r)
	}
	for _, want := range []string{"test webhook FAILED", "status code: 503", "duration:    1.5s", "success:     false",
		"error:       receiver answered 503 Service Unavailable"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %s", want, r)
		}
	}
}

func TestTestWaitNoResponse(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	playOperator(t, ns, "orders", webhooksv1alpha1.TestResult{Duration: webhooksv1alpha1.AttemptDuration(10 * time.Second), Error: "timeout awaiting response headers"})

	r := kubectlWebhook(t, "", "test", "orders", "-n", ns, "--wait")
	mustFail(t, r, "status code: none (no response)")
}

func TestTestWaitTimeout(t *testing.T) {
	ns := newNamespace(t)
	ep := newEndpoint(t, ns, "orders")
	// An earlier, successful result must not be taken for the new one.
	before := ep.DeepCopy()
	ep.Status.LastTest = &webhooksv1alpha1.TestResult{RequestedAt: "2024-01-01T00:00:00Z", StatusCode: 200, Success: true}
	if err := k.Status().Patch(context.Background(), ep, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	r := kubectlWebhook(t, "", "test", "orders", "-n", ns, "--wait", "--timeout", "1s")
	mustFail(t, r, "no test result for webhookendpoint/orders after 1s")
	if strings.Contains(r.stdout, "succeeded") {
		t.Errorf("took the old result for the new test: %s", r)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("--timeout 1s took %s", elapsed)
	}
	mustFail(t, kubectlWebhook(t, "", "test", "orders", "-n", ns, "--wait", "--timeout", "0s"), "--timeout must be positive")
}

// A status written by an older operator (or by anyone who may write it) can carry a receiver's control
// characters: the plugin prints them as spaces, never raw to the terminal.
func TestTestResultNeverPrintsControlCharactersRaw(t *testing.T) {
	var out strings.Builder
	result := &webhooksv1alpha1.TestResult{StatusCode: 500, Error: "HTTP 500: a\x1b[2Jb\u009b31mc\u202ed\u2066e"}
	if err := printTestResult(&out, "ep", result); err != nil {
		t.Fatal(err)
	}
	for _, r := range out.String() {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Fatalf("printed %U raw: %q", r, out.String())
		}
	}
	if !strings.Contains(out.String(), "error:       HTTP 500: a [2Jb 31mc d e") {
		t.Fatalf("the error is not shown: %q", out.String())
	}
}
