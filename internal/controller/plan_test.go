package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
			s := newEventScope(planEvent(), nil, now)
			for i := range n {
				s.endpoints = append(s.endpoints, planEndpoint(fmt.Sprintf("ep-%03d", i), types.UID(fmt.Sprint(i))))
			}
			err := (&DocumentEventReconciler{}).ensureTargets(context.Background(), s)
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
	markWaiting(d, engine.Readiness{Reason: webhooksv1alpha1.SecretNotFoundReason, Message: strings.Repeat("é", 600)})
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
			applyRedelivery(ev, []*webhooksv1alpha1.WebhookEndpoint{&added, &kept, &recreated}, time.Now())
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
