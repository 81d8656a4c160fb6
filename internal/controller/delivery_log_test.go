package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

func capturingLogger(lines *[]string) logr.Logger {
	return funcr.New(func(prefix, args string) { *lines = append(*lines, args) }, funcr.Options{})
}

func TestDeliveryLogWritesFailuresAtInfoLevelLimitedPerEndpoint(t *testing.T) {
	var lines []string
	log := capturingLogger(&lines)
	dl := newDeliveryLog(10 * time.Second)
	start := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	ev := planEvent()
	next := metav1.NewMicroTime(start.Add(time.Second))
	failed := &webhooksv1alpha1.EndpointDelivery{Endpoint: "orders", DeliveryID: "whd_1", Reason: webhooksv1alpha1.AttemptFailedReason,
		Attempts: 2, LastError: "HTTP 503 Service Unavailable", NextAttemptTime: &next}
	res := delivery.Result{StatusCode: 503, Duration: 400 * time.Microsecond}
	orders := types.NamespacedName{Namespace: "acme", Name: "orders"}
	billing := types.NamespacedName{Namespace: "acme", Name: "billing"}

	dl.logAttempt(log, start, ev, orders, failed, res)
	for i := 1; i <= 4; i++ {
		dl.logAttempt(log, start.Add(time.Duration(i)*time.Second), ev, orders, failed, res)
	}
	dl.logAttempt(log, start.Add(5*time.Second), ev, billing, failed, res)
	dl.logAttempt(log, start.Add(12*time.Second), ev, orders, failed, res)
	dl.logAttempt(log, start.Add(13*time.Second), ev, orders, failed, delivery.Result{StatusCode: 200, Success: true})

	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3 (first, another endpoint, the next window):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"msg"="delivery attempt failed"`, `"endpoint"="orders"`, `"event"="ev"`,
		`"deliveryId"="whd_1"`, `"reason"="AttemptFailed"`, `"attempt"=2`, `"statusCode"=503`, `"duration"="0.4ms"`,
		`"nextAttemptTime"="2024-01-15T10:00:01Z"`, `"error"="HTTP 503 Service Unavailable"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("first line lacks %s: %s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], `"endpoint"="billing"`) || strings.Contains(lines[1], "suppressedSinceLast") {
		t.Errorf("another endpoint has its own limit: %s", lines[1])
	}
	if !strings.Contains(lines[2], `"suppressedSinceLast"=4`) {
		t.Errorf("the next window's line must count the 4 left out: %s", lines[2])
	}

	dl.logFailed(log, start.Add(13*time.Second), ev, &webhooksv1alpha1.EndpointDelivery{Endpoint: "orders", DeliveryID: "whd_1",
		Phase: webhooksv1alpha1.DeliveryFailed, Reason: webhooksv1alpha1.AttemptsExhaustedReason, Attempts: 8, LastError: "HTTP 503"})
	if len(lines) != 4 || !strings.Contains(lines[3], `"msg"="delivery failed"`) || !strings.Contains(lines[3], `"reason"="AttemptsExhausted"`) {
		t.Fatalf("a delivery that ends Failed has a line of its own, not limited by the attempts': %v", lines[3:])
	}

	dl.allow(deliveryLogKey{}, start.Add(time.Hour))
	if len(dl.windows) != 1 {
		t.Fatalf("%d windows kept after an hour of quiet, want only the one just written", len(dl.windows))
	}
}
