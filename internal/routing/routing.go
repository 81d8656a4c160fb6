// Package routing holds the two rules that decide where a DocumentEvent goes, shared by the operator and
// the kubectl plugin so that the plugin reports exactly what the operator does: which endpoints an event
// targets, and the delivery id of an event's delivery to one endpoint.
package routing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// DeliveryID is the id of the delivery of an event to an endpoint, sent as X-Webhook-Id. It is derived
// from both UIDs, so it is the same for every attempt, survives a crash before anything was recorded,
// and differs when an endpoint is recreated under the same name.
func DeliveryID(eventUID, endpointUID types.UID) string {
	sum := sha256.Sum256([]byte(string(eventUID) + "/" + string(endpointUID)))
	return "whd_" + hex.EncodeToString(sum[:16])
}

// Selector returns the event's spec.endpointSelector; unset selects every endpoint.
func Selector(ev *webhooksv1alpha1.DocumentEvent) (labels.Selector, error) {
	if ev.Spec.EndpointSelector == nil {
		return labels.Everything(), nil
	}
	selector, err := metav1.LabelSelectorAsSelector(ev.Spec.EndpointSelector)
	if err != nil {
		return nil, fmt.Errorf("spec.endpointSelector: %w", err)
	}
	return selector, nil
}

// Exclusion says why an event does not go to an endpoint; Included when it does.
type Exclusion int

const (
	Included Exclusion = iota
	// OtherNamespace: events only go to endpoints in their own namespace.
	OtherNamespace
	// Deleting: the endpoint is being deleted.
	Deleting
	// NotSelected: the event's spec.endpointSelector does not match the endpoint's labels.
	NotSelected
	// EventTypeFiltered: the endpoint's spec.eventTypes leaves out the event's type.
	EventTypeFiltered
	// DocTypeFiltered: the endpoint's spec.docTypes leaves out the event's docType.
	DocTypeFiltered
)

// Targets reports whether the event goes to the endpoint: same namespace, not being deleted, chosen by
// the event's selector, and allowed by the endpoint's eventTypes and docTypes.
func Targets(ev *webhooksv1alpha1.DocumentEvent, selector labels.Selector, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	return Exclude(ev, selector, ep) == Included
}

// Exclude returns the first rule, in the order Targets checks them, that keeps the event from the
// endpoint.
func Exclude(ev *webhooksv1alpha1.DocumentEvent, selector labels.Selector, ep *webhooksv1alpha1.WebhookEndpoint) Exclusion {
	switch {
	case ep.Namespace != ev.Namespace:
		return OtherNamespace
	case !ep.DeletionTimestamp.IsZero():
		return Deleting
	case !selector.Matches(labels.Set(ep.Labels)):
		return NotSelected
	case len(ep.Spec.EventTypes) > 0 && !slices.Contains(ep.Spec.EventTypes, ev.GetEvent()):
		return EventTypeFiltered
	}
	if len(ep.Spec.DocTypes) > 0 {
		docType := ev.Spec.DocumentStatus.DocType
		if docType == nil || !slices.Contains(ep.Spec.DocTypes, *docType) {
			return DocTypeFiltered
		}
	}
	return Included
}
