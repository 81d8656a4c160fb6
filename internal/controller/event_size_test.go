package controller

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// worstStatus is the largest status this operator can write for the deliveries: every field at its
// longest, lastError made of characters JSON escapes, conditions with the longest messages.
func worstStatus(deliveries []webhooksv1alpha1.EndpointDelivery, lastRedeliveryRequest string) webhooksv1alpha1.DocumentEventStatus {
	// A time in December with microseconds set, so that no digit is dropped.
	at := metav1.NewMicroTime(time.Date(2099, 12, 31, 23, 59, 59, 999999000, time.UTC))
	st := webhooksv1alpha1.DocumentEventStatus{
		ObservedGeneration:    math.MinInt64,
		Phase:                 webhooksv1alpha1.DocumentEventDelivering,
		CompletionTime:        &at,
		LastRedeliveryRequest: lastRedeliveryRequest,
	}
	for _, d := range deliveries {
		d.Phase = webhooksv1alpha1.DeliveryDelivered
		d.Reason = strings.Repeat("R", maxReasonBytes)
		d.Attempts = math.MaxInt32
		d.LastAttemptTime, d.NextAttemptTime, d.DeliveredAt = &at, &at, &at
		d.LastStatusCode = math.MinInt32
		d.LastError = strings.Repeat("<", webhooksv1alpha1.MaxDeliveryErrorLength)
		d.Duration = &metav1.Duration{Duration: math.MinInt64}
		st.Deliveries = append(st.Deliveries, d)
	}
	for _, condType := range []string{webhooksv1alpha1.DeliveredCondition, webhooksv1alpha1.ReadyCondition,
		webhooksv1alpha1.ReconcilingCondition, webhooksv1alpha1.StalledCondition} {
		st.Conditions = append(st.Conditions, metav1.Condition{
			Type: condType, Status: metav1.ConditionUnknown, ObservedGeneration: math.MinInt64,
			LastTransitionTime: metav1.NewTime(at.Time), Reason: strings.Repeat("R", maxReasonBytes),
			Message: strings.Repeat("m", maxConditionMessageBytes),
		})
	}
	return st
}

func targets(n, nameLength int) []webhooksv1alpha1.EndpointDelivery {
	out := make([]webhooksv1alpha1.EndpointDelivery, n)
	for i := range out {
		name := fmt.Sprintf("%03d-", i)
		out[i] = webhooksv1alpha1.EndpointDelivery{
			Endpoint:   name + strings.Repeat("e", nameLength-len(name)),
			DeliveryID: "whd_" + strings.Repeat("0", 32),
		}
	}
	return out
}

// The estimate must be an upper bound of the real encoding, and close enough to it not to refuse events
// that would fit.
func TestMaxStatusJSONBytesBoundsTheWorstStatus(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deliveries []webhooksv1alpha1.EndpointDelivery
		redeliver  string
	}{
		{"one delivery", targets(1, 8), ""},
		{"short names", targets(40, 12), ""},
		{"the most deliveries, the longest names", targets(webhooksv1alpha1.MaxDeliveriesPerEvent, 253), ""},
		{"a redelivery request copied into status", targets(3, 20), strings.Repeat("<", 300)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := worstStatus(tc.deliveries, tc.redeliver)
			raw, err := json.Marshal(struct {
				Status webhooksv1alpha1.DocumentEventStatus `json:"status"`
			}{st})
			if err != nil {
				t.Fatal(err)
			}
			// The bound counts the "status" member with its comma inside an object; raw has the braces.
			got, bound := len(raw)-2+1, maxStatusJSONBytes(tc.deliveries, tc.redeliver)
			if got > bound {
				t.Errorf("the worst status takes %d bytes as JSON, over the bound of %d", got, bound)
			}
			if slack := bound - got; slack > bound/50+64 {
				t.Errorf("the bound %d is %d bytes above the worst status (%d): too loose", bound, slack, got)
			}
		})
	}
}

// The bound assumes every reason and condition message the operator writes with deliveries fits.
func TestStatusTextsFitTheirBounds(t *testing.T) {
	for _, reason := range []string{
		webhooksv1alpha1.AttemptFailedReason, webhooksv1alpha1.AttemptsExhaustedReason, webhooksv1alpha1.EndpointDeletedReason,
		webhooksv1alpha1.RedeliveryRequestedReason, webhooksv1alpha1.EndpointNotReadyReason, webhooksv1alpha1.CircuitOpenReason,
		webhooksv1alpha1.DestinationBlockedReason, webhooksv1alpha1.InvalidPayloadReason, webhooksv1alpha1.EventTooLargeReason,
		webhooksv1alpha1.DeliveringReason, webhooksv1alpha1.DeliverySucceededReason, webhooksv1alpha1.DeliveryFailedReason,
	} {
		if len(reason) > maxReasonBytes {
			t.Errorf("reason %s has %d bytes, over maxReasonBytes (%d)", reason, len(reason), maxReasonBytes)
		}
	}
	ev := &webhooksv1alpha1.DocumentEvent{}
	ev.Status.Deliveries = targets(webhooksv1alpha1.MaxDeliveriesPerEvent, 20)
	ev.Status.Deliveries[0].Phase = webhooksv1alpha1.DeliveryFailed
	summarize(ev, nil, time.Now())
	delivering := ev.Status.Conditions[0].Message
	for i := range ev.Status.Deliveries {
		ev.Status.Deliveries[i].Phase = webhooksv1alpha1.DeliveryFailed
	}
	summarize(ev, nil, time.Now())
	messages := []string{
		delivering,
		ev.Status.Conditions[0].Message,
		tooLargeMessage(eventSize{stored: math.MaxInt32, status: math.MaxInt32}, webhooksv1alpha1.MaxDeliveriesPerEvent),
	}
	for _, m := range messages {
		raw, _ := json.Marshal(m)
		if len(raw) != len(m)+2 || len(m) > maxConditionMessageBytes {
			t.Errorf("message %q takes %d bytes as JSON, want at most %d and nothing escaped", m, len(raw)-2, maxConditionMessageBytes)
		}
	}
}

func TestMeasureEvent(t *testing.T) {
	event := func(blob, deliveries int) *webhooksv1alpha1.DocumentEvent {
		ev := &webhooksv1alpha1.DocumentEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "doc", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "stripped by the cache"}}},
			Spec: webhooksv1alpha1.DocumentEventSpec{
				DocumentID: "doc_1",
				Extraction: &webhooksv1alpha1.Extraction{Fields: &apiextensionsv1.JSON{Raw: []byte(`{"blob":"` + strings.Repeat("x", blob) + `"}`)}},
			},
		}
		ev.Status.Deliveries = targets(deliveries, 20)
		return ev
	}
	perDelivery := maxDeliveryBytes + len(deliveryFieldsTemplate) + 2*20 + len("whd_") + 32
	for _, tc := range []struct {
		name string
		ev   *webhooksv1alpha1.DocumentEvent
		fits bool
	}{
		{"a small event with one endpoint", event(100, 1), true},
		{"a 1 MiB event with one endpoint", event(1<<20, 1), true},
		{"a 1 MiB event with 100 endpoints", event(1<<20, 100), true},
		{"a 1 MiB event with 256 endpoints", event(1<<20, webhooksv1alpha1.MaxDeliveriesPerEvent), false},
		{"1.4 MiB with one endpoint", event(1400<<10, 1), true},
		{"1.45 MiB with one endpoint", event(1450<<10, 1), false},
		{"just fits with 10 endpoints", event(maxStoredEventBytes-23_000-10*perDelivery, 10), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size, err := measureEvent(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			withoutStatus := tc.ev.DeepCopy()
			withoutStatus.Status, withoutStatus.ManagedFields = webhooksv1alpha1.DocumentEventStatus{}, nil
			withoutStatus.APIVersion, withoutStatus.Kind = webhooksv1alpha1.GroupVersion.String(), "DocumentEvent"
			raw, _ := json.Marshal(withoutStatus)
			if size.stored != len(raw) {
				t.Errorf("stored = %d, want %d (the event as JSON, without status and managedFields)", size.stored, len(raw))
			}
			if size.fits() != tc.fits {
				t.Errorf("fits() = %v with %d stored + %d status against %d, want %v",
					size.fits(), size.stored, size.status, maxStoredEventBytes, tc.fits)
			}
		})
	}
}
