package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/engine"
)

func planEndpoint(name string, uid types.UID) webhooksv1alpha1.WebhookEndpoint {
	return webhooksv1alpha1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name, UID: uid}}
}

func planEvent() *webhooksv1alpha1.DocumentEvent {
	return &webhooksv1alpha1.DocumentEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "ev", UID: "ev-uid"}}
}

func TestMoreEndpointsThanAnEventCanRecordFailItWithAClearReason(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{webhooksv1alpha1.MaxDeliveriesPerEvent, webhooksv1alpha1.MaxDeliveriesPerEvent + 1} {
		t.Run(fmt.Sprintf("%d endpoints", n), func(t *testing.T) {
			s := newEventScope(logr.Discard(), planEvent(), nil, now)
			for i := range n {
				s.endpoints = append(s.endpoints, planEndpoint(fmt.Sprintf("ep-%03d", i), types.UID(fmt.Sprint(i))))
			}
			err := (&DocumentEventReconciler{shared: newShared(nil, nil, Options{})}).ensureTargets(context.Background(), s)
			if n <= webhooksv1alpha1.MaxDeliveriesPerEvent {
				if err != nil || len(s.ev.Status.Deliveries) != n {
					t.Fatalf("err %v, %d deliveries; want none and %d", err, len(s.ev.Status.Deliveries), n)
				}
				return
			}
			if !errors.Is(err, reconcile.TerminalError(nil)) {
				t.Fatalf("err %v, want a terminal error", err)
			}
			if s.ev.Status.Phase != webhooksv1alpha1.DocumentEventFailed || len(s.ev.Status.Deliveries) != 0 {
				t.Fatalf("phase %s with %d deliveries, want Failed with none", s.ev.Status.Phase, len(s.ev.Status.Deliveries))
			}
			ready := s.ev.Status.Conditions[0]
			if ready.Reason != webhooksv1alpha1.TooManyEndpointsReason || !strings.Contains(ready.Message, "narrow spec.endpointSelector") {
				t.Fatalf("condition %s: %s, want TooManyEndpoints with advice", ready.Reason, ready.Message)
			}
			if s.ev.Status.CompletionTime == nil {
				t.Fatal("a failed event needs a completionTime for its TTL")
			}
		})
	}
}

func TestStatusMessagesFitTheirSchemaLimits(t *testing.T) {
	d := &webhooksv1alpha1.EndpointDelivery{}
	markWaiting(d, engine.Readiness{Reason: webhooksv1alpha1.SecretNotFoundReason, Message: strings.Repeat("é", 600)}, 0, time.Now())
	if len(d.LastError) > webhooksv1alpha1.MaxDeliveryErrorLength || !strings.HasSuffix(d.LastError, "...") {
		t.Fatalf("lastError is %d bytes, limit %d", len(d.LastError), webhooksv1alpha1.MaxDeliveryErrorLength)
	}
	if !strings.HasPrefix(d.LastError, webhooksv1alpha1.SecretNotFoundReason+": ") {
		t.Fatalf("lastError %q lost its reason", d.LastError[:40])
	}
	ev := planEvent()
	setEventStatus(ev, webhooksv1alpha1.DocumentEventPending, webhooksv1alpha1.NoEndpointsReason, strings.Repeat("x", 40000), time.Now())
	for _, c := range ev.Status.Conditions {
		if len(c.Message) > webhooksv1alpha1.MaxConditionMessageLength {
			t.Fatalf("condition %s message is %d bytes", c.Type, len(c.Message))
		}
	}
}

func TestAWaitingDeliveryKeepsTheReceiversErrorAndShowsTheNextProbe(t *testing.T) {
	now := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	past := metav1.NewMicroTime(now.Add(-time.Second))
	circuit := engine.Readiness{Reason: webhooksv1alpha1.CircuitOpenReason, Message: "3 consecutive failed attempts"}
	secret := engine.Readiness{Reason: webhooksv1alpha1.SecretNotFoundReason, Message: `Secret "hook" not found`}
	for _, tc := range []struct {
		name       string
		before     webhooksv1alpha1.EndpointDelivery
		readiness  engine.Readiness
		wait       time.Duration
		wantReason string
		wantError  string
		wantNext   *time.Time
	}{{
		name: "circuit open after a failed attempt keeps the HTTP error",
		before: webhooksv1alpha1.EndpointDelivery{Phase: webhooksv1alpha1.DeliveryRetrying, Attempts: 3,
			Reason: webhooksv1alpha1.AttemptFailedReason, LastError: "HTTP 500 Internal Server Error", NextAttemptTime: &past},
		readiness: circuit, wait: 2 * time.Second,
		wantReason: webhooksv1alpha1.CircuitOpenReason, wantError: "HTTP 500 Internal Server Error",
		wantNext: ptr.To(now.Add(2 * time.Second)),
	}, {
		name:      "circuit still open on the next look keeps it too",
		before:    webhooksv1alpha1.EndpointDelivery{Reason: webhooksv1alpha1.CircuitOpenReason, LastError: "HTTP 500 Internal Server Error"},
		readiness: circuit, wait: time.Second,
		wantReason: webhooksv1alpha1.CircuitOpenReason, wantError: "HTTP 500 Internal Server Error",
		wantNext: ptr.To(now.Add(time.Second)),
	}, {
		name:      "a delivery never attempted shows the circuit",
		before:    webhooksv1alpha1.EndpointDelivery{Phase: webhooksv1alpha1.DeliveryPending},
		readiness: circuit, wait: time.Second,
		wantReason: webhooksv1alpha1.CircuitOpenReason, wantError: "CircuitOpen: 3 consecutive failed attempts",
		wantNext: ptr.To(now.Add(time.Second)),
	}, {
		name: "an endpoint that is not ready has no retry time",
		before: webhooksv1alpha1.EndpointDelivery{Phase: webhooksv1alpha1.DeliveryRetrying, Attempts: 1,
			Reason: webhooksv1alpha1.AttemptFailedReason, LastError: "HTTP 500", NextAttemptTime: &past},
		readiness:  secret,
		wantReason: webhooksv1alpha1.EndpointNotReadyReason, wantError: `SecretNotFound: Secret "hook" not found`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.before.DeepCopy()
			markWaiting(d, tc.readiness, tc.wait, now)
			if d.Reason != tc.wantReason || d.LastError != tc.wantError {
				t.Fatalf("reason %q lastError %q, want %q %q", d.Reason, d.LastError, tc.wantReason, tc.wantError)
			}
			switch {
			case tc.wantNext == nil && d.NextAttemptTime != nil:
				t.Fatalf("nextAttemptTime %v, want none", d.NextAttemptTime)
			case tc.wantNext != nil && (d.NextAttemptTime == nil || !d.NextAttemptTime.Time.Equal(*tc.wantNext)):
				t.Fatalf("nextAttemptTime %v, want %v", d.NextAttemptTime, *tc.wantNext)
			}
			if !isDue(d, now) {
				t.Fatal("a delivery waiting for its endpoint must be looked at on every reconcile")
			}
		})
	}
}

func TestAnEventWithoutTargetsSaysWhichFilterExcludedHowManyEndpoints(t *testing.T) {
	withDocTypes := func(name string, docTypes ...string) webhooksv1alpha1.WebhookEndpoint {
		ep := planEndpoint(name, types.UID(name))
		ep.Spec.DocTypes = docTypes
		return ep
	}
	labelled := planEndpoint("labelled", "labelled-uid")
	labelled.Labels = map[string]string{"team": "sales"}
	onlyUpdates := planEndpoint("updates", "updates-uid")
	onlyUpdates.Spec.EventTypes = []webhooksv1alpha1.EventType{"document.updated"}
	for _, tc := range []struct {
		name      string
		selector  *metav1.LabelSelector
		endpoints []webhooksv1alpha1.WebhookEndpoint
		want      string
	}{{
		name: "empty namespace",
		want: `no WebhookEndpoint exists in namespace "acme"; the event is delivered when one matches`,
	}, {
		name:      "one endpoint for other document types",
		endpoints: []webhooksv1alpha1.WebhookEndpoint{withDocTypes("receipts", "RECEIPT")},
		want: `the only WebhookEndpoint in namespace "acme" does not match this event: excluded 1 by their ` +
			`spec.docTypes (the event's docType is "INVOICE"); the event is delivered when one matches`,
	}, {
		name:     "several filters",
		selector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "billing"}},
		endpoints: []webhooksv1alpha1.WebhookEndpoint{
			labelled, withDocTypes("receipts", "RECEIPT"), withDocTypes("contracts", "CONTRACT"), onlyUpdates,
		},
		want: `none of the 4 WebhookEndpoints in namespace "acme" matches this event: excluded 4 by the event's ` +
			`spec.endpointSelector (team=billing); the event is delivered when one matches`,
	}, {
		name: "types",
		endpoints: []webhooksv1alpha1.WebhookEndpoint{
			withDocTypes("receipts", "RECEIPT"), withDocTypes("contracts", "CONTRACT"), onlyUpdates,
		},
		want: `none of the 3 WebhookEndpoints in namespace "acme" matches this event: excluded 1 by their ` +
			`spec.eventTypes (the event's type is "document.ready"), 2 by their spec.docTypes (the event's docType ` +
			`is "INVOICE"); the event is delivered when one matches`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ev := planEvent()
			ev.Spec.EndpointSelector = tc.selector
			ev.Spec.DocumentStatus.DocType = ptr.To("INVOICE")
			summarize(ev, tc.endpoints, time.Now())
			ready := apimeta.FindStatusCondition(ev.Status.Conditions, webhooksv1alpha1.ReadyCondition)
			if ev.Status.Phase != webhooksv1alpha1.DocumentEventPending || ready.Reason != webhooksv1alpha1.NoEndpointsReason {
				t.Fatalf("phase %s reason %s, want Pending NoEndpoints", ev.Status.Phase, ready.Reason)
			}
			if ready.Message != tc.want {
				t.Fatalf("message\n got %s\nwant %s", ready.Message, tc.want)
			}
		})
	}
}

func TestRedeliveryReResolvesTheTargetsThatExistNow(t *testing.T) {
	kept, recreated := planEndpoint("kept", "kept-uid"), planEndpoint("recreated", "new-uid")
	added := planEndpoint("added", "added-uid")
	oldRecreated := planEndpoint("recreated", "old-uid")
	gone := planEndpoint("gone", "gone-uid")
	base := planEvent()
	failedTo := func(ep webhooksv1alpha1.WebhookEndpoint, reason string) webhooksv1alpha1.EndpointDelivery {
		return webhooksv1alpha1.EndpointDelivery{Endpoint: ep.Name, DeliveryID: deliveryID(base, &ep),
			Phase: webhooksv1alpha1.DeliveryFailed, Reason: reason, Attempts: 3}
	}
	deliveredTo := func(ep webhooksv1alpha1.WebhookEndpoint) webhooksv1alpha1.EndpointDelivery {
		return webhooksv1alpha1.EndpointDelivery{Endpoint: ep.Name, DeliveryID: deliveryID(base, &ep),
			Phase: webhooksv1alpha1.DeliveryDelivered, Attempts: 1}
	}
	tests := []struct {
		name  string
		scope string
		want  map[string]string // endpoint → phase/id after the redelivery ("=" keeps the id)
	}{
		{name: "all", want: map[string]string{
			"added": "Pending " + deliveryID(base, &added), "gone": "Failed =", "kept": "Pending =",
			"recreated": "Pending " + deliveryID(base, &recreated),
		}},
		{name: "failed only", scope: webhooksv1alpha1.RedeliverScopeFailed, want: map[string]string{
			"gone": "Failed =", "kept": "Delivered =", "recreated": "Pending " + deliveryID(base, &recreated),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := planEvent()
			ev.Annotations = map[string]string{webhooksv1alpha1.RedeliverRequestedAtAnnotation: "2026-12-01T10:00:00Z"}
			if tt.scope != "" {
				ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] = tt.scope
			}
			ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
			ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{
				failedTo(gone, webhooksv1alpha1.EndpointDeletedReason), deliveredTo(kept),
				failedTo(oldRecreated, webhooksv1alpha1.EndpointDeletedReason),
			}
			before := map[string]string{}
			for _, d := range ev.Status.Deliveries {
				before[d.Endpoint] = d.DeliveryID
			}
			if err := applyRedelivery(ev, []webhooksv1alpha1.WebhookEndpoint{added, kept, recreated}, time.Now()); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, d := range ev.Status.Deliveries {
				id := d.DeliveryID
				if id == before[d.Endpoint] {
					id = "="
				}
				got[d.Endpoint] = string(d.Phase) + " " + id
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("after the redelivery:\n got %v\nwant %v", got, tt.want)
			}
			if ev.Status.LastRedeliveryRequest != "2026-12-01T10:00:00Z" || ev.Status.CompletionTime != nil {
				t.Fatalf("lastRedeliveryRequest %q, completionTime %v: want the value acted on and no completion time",
					ev.Status.LastRedeliveryRequest, ev.Status.CompletionTime)
			}
		})
	}
}
