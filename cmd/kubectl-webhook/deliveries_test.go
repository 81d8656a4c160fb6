package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/routing"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

func testEvent() *webhooksv1alpha1.DocumentEvent {
	return &webhooksv1alpha1.DocumentEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "doc", UID: "ev-uid"}}
}

func testEndpoint(name string, uid types.UID) *webhooksv1alpha1.WebhookEndpoint {
	return &webhooksv1alpha1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name, UID: uid}}
}

func TestEndpointMatches(t *testing.T) {
	invoice := "INVOICE"
	now := metav1.Now()
	cases := []struct {
		name  string
		event func(*webhooksv1alpha1.DocumentEvent)
		ep    func(*webhooksv1alpha1.WebhookEndpoint)
		want  bool
	}{
		{name: "no filters", want: true},
		{name: "other namespace", ep: func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Namespace = "other" }},
		{name: "being deleted", ep: func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.DeletionTimestamp = &now }},
		{
			name: "selector matches",
			event: func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.EndpointSelector = metav1.SetAsLabelSelector(map[string]string{"team": "a"})
			},
			ep:   func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Labels = map[string]string{"team": "a"} },
			want: true,
		},
		{
			name: "selector does not match",
			event: func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.EndpointSelector = metav1.SetAsLabelSelector(map[string]string{"team": "a"})
			},
			ep: func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Labels = map[string]string{"team": "b"} },
		},
		{
			name: "event type allowed",
			ep: func(ep *webhooksv1alpha1.WebhookEndpoint) {
				ep.Spec.EventTypes = []webhooksv1alpha1.EventType{webhooksv1alpha1.DocumentReadyEvent}
			},
			want: true,
		},
		{name: "event type not allowed", ep: func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.EventTypes = []webhooksv1alpha1.EventType{"other.event"}
		}},
		{
			name:  "doc type allowed",
			event: func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = &invoice },
			ep:    func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.DocTypes = []string{"INVOICE"} },
			want:  true,
		},
		{name: "doc type unknown", ep: func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.DocTypes = []string{"INVOICE"} }},
	}
	for _, tc := range cases {
		ev, ep := testEvent(), testEndpoint("ep", "ep-uid")
		if tc.event != nil {
			tc.event(ev)
		}
		if tc.ep != nil {
			tc.ep(ep)
		}
		if got := webhookops.EndpointMatches(ev, ep); got != tc.want {
			t.Errorf("%s: endpointMatches = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestClassifyRedelivery covers the cases the envtest tests do not reach.
func TestClassifyRedelivery(t *testing.T) {
	ev := testEvent()
	now := metav1.Now()
	deleting := testEndpoint("deleting", "deleting-uid")
	deleting.DeletionTimestamp = &now
	recreatedLate := testEndpoint("late", "late-new-uid")
	recreatedOther := testEndpoint("other", "other-new-uid")
	recreatedOther.Spec.DocTypes = []string{"RECEIPT"}
	endpoints := map[string]*webhooksv1alpha1.WebhookEndpoint{"deleting": deleting, "late": recreatedLate, "other": recreatedOther}

	failed := func(endpoint string, uid types.UID) webhooksv1alpha1.EndpointDelivery {
		return webhooksv1alpha1.EndpointDelivery{Endpoint: endpoint, DeliveryID: routing.DeliveryID(ev.UID, uid),
			Phase: webhooksv1alpha1.DeliveryFailed, Reason: webhooksv1alpha1.AttemptsExhaustedReason, Attempts: 3}
	}
	before := ev.DeepCopy()
	before.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{
		failed("deleting", "deleting-uid"), failed("late", "late-old-uid"), failed("other", "other-old-uid"),
	}
	after := before.DeepCopy()
	after.Status.LastRedeliveryRequest = "x"

	outcomes, notAdded := classifyRedelivery(before, after, endpoints, func(name string) string { return "acme/" + name })
	want := []string{
		"endpoint acme/deleting is being deleted: still Failed (AttemptsExhausted)",
		"endpoint acme/late was re-created after the operator acted (redeliver again to send to it): still Failed (AttemptsExhausted)",
		"endpoint acme/other was re-created and no longer matches this event: still Failed (AttemptsExhausted)",
	}
	if len(outcomes) != len(want) || notAdded != 0 {
		t.Fatalf("got %d outcomes, %d not added: %+v", len(outcomes), notAdded, outcomes)
	}
	for i, o := range outcomes {
		if o.kind != outcomeNotRestarted || o.why != want[i] {
			t.Errorf("outcome %d = %d %q, want not restarted %q", i, o.kind, o.why, want[i])
		}
	}

	// Without the endpoints, the status alone tells: a restarted delivery lost its attempts.
	after.Status.Deliveries[0] = webhooksv1alpha1.EndpointDelivery{Endpoint: "deleting", DeliveryID: before.Status.Deliveries[0].DeliveryID,
		Phase: webhooksv1alpha1.DeliveryPending, Reason: webhooksv1alpha1.RedeliveryRequestedReason}
	outcomes, _ = classifyRedelivery(before, after, nil, func(name string) string { return name })
	if outcomes[0].kind != outcomeRestarted {
		t.Errorf("changed delivery without endpoints: kind %d, want restarted", outcomes[0].kind)
	}
	if outcomes[1].kind != outcomeNotRestarted || !strings.Contains(outcomes[1].why, "could not be read") {
		t.Errorf("unchanged delivery without endpoints: %+v", outcomes[1])
	}

	// An event at the limit of deliveries gets no more; the report counts the matching endpoints left out.
	full := ev.DeepCopy()
	full.Status.LastRedeliveryRequest = "x"
	matching := map[string]*webhooksv1alpha1.WebhookEndpoint{}
	for i := range webhooksv1alpha1.MaxDeliveriesPerEvent + 2 {
		ep := testEndpoint(strings.Repeat("e", 1)+string(rune('a'+i%26))+string(rune('a'+i/26)), types.UID("uid-"+string(rune(i))))
		matching[ep.Name] = ep
		if i < webhooksv1alpha1.MaxDeliveriesPerEvent {
			full.Status.Deliveries = append(full.Status.Deliveries, webhooksv1alpha1.EndpointDelivery{
				Endpoint: ep.Name, DeliveryID: routing.DeliveryID(ev.UID, ep.UID), Phase: webhooksv1alpha1.DeliveryPending})
		}
	}
	if _, notAdded := classifyRedelivery(full, full, matching, func(name string) string { return name }); notAdded != 2 {
		t.Errorf("notAdded = %d, want 2", notAdded)
	}
}

func TestRequestObserve(t *testing.T) {
	ev := testEvent()
	ev.Annotations = map[string]string{webhooksv1alpha1.RedeliverRequestedAtAnnotation: "v2"}
	r := &redeliveryRequest{uid: ev.UID, state: requestWaiting}
	r.observe(ev, "v1")
	if r.state != requestSuperseded || r.supersededBy != "v2" {
		t.Errorf("a newer annotation: state %d by %q, want superseded by v2", r.state, r.supersededBy)
	}
	r = &redeliveryRequest{uid: "another-uid", state: requestWaiting}
	r.observe(ev, "v2")
	if r.state != requestGone {
		t.Errorf("an event of another UID: state %d, want gone", r.state)
	}
	r = &redeliveryRequest{uid: ev.UID, state: requestWaiting}
	r.observe(ev, "v2")
	if r.state != requestWaiting {
		t.Errorf("not acted on yet: state %d, want waiting", r.state)
	}
	ev.Status.LastRedeliveryRequest = "v2"
	r.observe(ev, "v2")
	if r.state != requestConfirmed || r.latest != ev {
		t.Errorf("acted on: state %d, want confirmed", r.state)
	}
}

// TestSummaryDetail covers the summary of many events whose requests did not all get confirmed.
func TestSummaryDetail(t *testing.T) {
	requests := make([]*redeliveryRequest, 0, 13)
	for i := range 13 {
		r := &redeliveryRequest{key: types.NamespacedName{Namespace: "acme", Name: fmt.Sprintf("ev-%02d", i)}, state: requestUnconfirmed}
		switch i {
		case 0:
			r.state, r.outcomes = requestConfirmed, []deliveryOutcome{
				{kind: outcomeRestarted}, {kind: outcomeNotRestarted, why: "endpoint acme/a no longer exists: still Failed"}}
		case 1:
			r.state, r.outcomes = requestConfirmed, []deliveryOutcome{
				{kind: outcomeNotRestarted, why: "endpoint acme/b no longer matches this event: still Failed"},
				{kind: outcomeNotRestarted, why: "endpoint acme/a no longer exists: still Failed"}}
		case 2:
			r.state = requestSuperseded
		case 3:
			r.state = requestGone
		}
		requests = append(requests, r)
	}
	totals := totalOutcomes(requests, true)
	var b strings.Builder
	if err := totals.printSummaryDetail(&b, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := "2 DocumentEvents redelivered: 1 delivery restarted, 3 not restarted; 9 not confirmed within 1m0s; " +
		"1 replaced by a newer request; 1 deleted while waiting\n" +
		"3 deliveries not restarted:\n" +
		"  2  endpoint acme/a no longer exists: still Failed\n" +
		"  1  endpoint acme/b no longer matches this event: still Failed\n" +
		"DocumentEvents not confirmed within 1m0s: acme/ev-04, acme/ev-05, acme/ev-06, acme/ev-07, acme/ev-08, " +
		"acme/ev-09, acme/ev-10, acme/ev-11, acme/ev-12\n" +
		"DocumentEvents whose request a newer one replaced: acme/ev-02\n" +
		"DocumentEvents deleted before the operator confirmed: acme/ev-03\n"
	if got := totals.summaryLine(time.Minute) + "\n" + b.String(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	if got := listNames([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}); got != "a, b, c, d, e, f, g, h, i, j and 2 more" {
		t.Errorf("listNames = %q", got)
	}
}
