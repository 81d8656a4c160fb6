package webhookops

import (
	"k8s.io/apimachinery/pkg/api/meta"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/routing"
)

// The operator decides which endpoint a delivery belongs to by its delivery id, and which endpoints an
// event targets by its selector and the endpoints' filters. The plugin uses the same rules
// (internal/routing), so that it can tell a delivery to an endpoint from one to an earlier endpoint of
// the same name, and say why a redelivery did not restart a delivery.

// DeliveryBelongsTo reports whether the delivery was made to this endpoint rather than to an earlier
// endpoint of the same name.
func DeliveryBelongsTo(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	return d.Endpoint == ep.Name && d.DeliveryID == routing.DeliveryID(ev.UID, ep.UID)
}

// EndpointMatches reports whether the operator would send the event to the endpoint. An event whose
// selector does not parse matches nothing: the operator fails it.
func EndpointMatches(ev *webhooksv1alpha1.DocumentEvent, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	selector, err := routing.Selector(ev)
	return err == nil && routing.Targets(ev, selector, ep)
}

// EndpointKey names an endpoint across namespaces.
type EndpointKey struct{ Namespace, Name string }

// Counts are the pending and failed deliveries to one endpoint.
type Counts struct{ Pending, Failed int }

// FormerCounts are the pending and failed deliveries to an endpoint name that do not count for the
// endpoint of that name, because they were made to an endpoint that no longer exists under that name.
type FormerCounts struct {
	Counts
	// Recreated is true when an endpoint of that name exists now, a newer one.
	Recreated bool
}

// CountDeliveries adds up the pending and failed deliveries per endpoint. A delivery counts for an
// endpoint only when its delivery id is the one the operator gives deliveries to that endpoint object,
// so that an endpoint deleted and created again under the same name is not charged with what was sent
// to the earlier one; those deliveries, and those to deleted endpoints, are counted in former.
func CountDeliveries(endpoints []webhooksv1alpha1.WebhookEndpoint, events []webhooksv1alpha1.DocumentEvent) (
	counts map[EndpointKey]*Counts, former map[EndpointKey]*FormerCounts) {
	byKey := make(map[EndpointKey]*webhooksv1alpha1.WebhookEndpoint, len(endpoints))
	counts = make(map[EndpointKey]*Counts, len(endpoints))
	for i := range endpoints {
		key := EndpointKey{endpoints[i].Namespace, endpoints[i].Name}
		byKey[key], counts[key] = &endpoints[i], &Counts{}
	}
	former = map[EndpointKey]*FormerCounts{}
	for i := range events {
		ev := &events[i]
		for j := range ev.Status.Deliveries {
			d := &ev.Status.Deliveries[j]
			pending, failed := !d.Phase.IsFinal(), d.Phase == webhooksv1alpha1.DeliveryFailed
			if !pending && !failed {
				continue
			}
			key := EndpointKey{ev.Namespace, d.Endpoint}
			var n *Counts
			if ep := byKey[key]; ep != nil && DeliveryBelongsTo(ev, d, ep) {
				n = counts[key]
			} else {
				f := former[key]
				if f == nil {
					f = &FormerCounts{Recreated: ep != nil}
					former[key] = f
				}
				n = &f.Counts
			}
			if failed {
				n.Failed++
			} else {
				n.Pending++
			}
		}
	}
	return counts, former
}

// Readiness is what the Ready condition of an endpoint says, as the status table and the console show it.
type Readiness struct {
	// Status is True, False or Unknown (also when there is no condition yet).
	Status string
	// Reason is the condition's reason, "-" when there is none.
	Reason string
	// Message is the condition's message.
	Message string
	// CircuitOpen is true while the circuit breaker holds deliveries back.
	CircuitOpen bool
}

// EndpointReadiness reads the Ready condition of the endpoint.
func EndpointReadiness(ep *webhooksv1alpha1.WebhookEndpoint) Readiness {
	r := Readiness{Status: "Unknown", Reason: "-"}
	if cond := meta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition); cond != nil {
		r.Status, r.Message = string(cond.Status), cond.Message
		if cond.Reason != "" {
			r.Reason = cond.Reason
		}
		r.CircuitOpen = cond.Reason == webhooksv1alpha1.CircuitOpenReason
	}
	return r
}
