package main

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// The operator decides which endpoint a delivery belongs to by its delivery id, and which endpoints an
// event targets by its selector and the endpoints' filters. The plugin repeats both rules here, so that it
// can tell a delivery to an endpoint from one to an earlier endpoint of the same name, and say why a
// redelivery did not restart a delivery. They mirror deliveryID and matchEndpoints in
// internal/controller/plan.go; TestDeliveryIDFormat pins the id's format.

// deliveryIDFor is the delivery id (X-Webhook-Id) the operator gives the delivery of an event to an
// endpoint: it changes when the endpoint is deleted and created again under the same name.
func deliveryIDFor(eventUID, endpointUID types.UID) string {
	sum := sha256.Sum256([]byte(string(eventUID) + "/" + string(endpointUID)))
	return "whd_" + hex.EncodeToString(sum[:16])
}

// deliveryBelongsTo reports whether the delivery was made to this endpoint rather than to an earlier
// endpoint of the same name.
func deliveryBelongsTo(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	return d.Endpoint == ep.Name && d.DeliveryID == deliveryIDFor(ev.UID, ep.UID)
}

// endpointMatches reports whether the operator would send the event to the endpoint: same namespace, not
// being deleted, selected by spec.endpointSelector, and allowed by the endpoint's eventTypes and docTypes.
func endpointMatches(ev *webhooksv1alpha1.DocumentEvent, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	if ep.Namespace != ev.Namespace || !ep.DeletionTimestamp.IsZero() {
		return false
	}
	if ev.Spec.EndpointSelector != nil {
		selector, err := metav1.LabelSelectorAsSelector(ev.Spec.EndpointSelector)
		if err != nil || !selector.Matches(labels.Set(ep.Labels)) {
			return false
		}
	}
	if len(ep.Spec.EventTypes) > 0 && !slices.Contains(ep.Spec.EventTypes, ev.GetEvent()) {
		return false
	}
	if len(ep.Spec.DocTypes) > 0 {
		docType := ev.Spec.DocumentStatus.DocType
		if docType == nil || !slices.Contains(ep.Spec.DocTypes, *docType) {
			return false
		}
	}
	return true
}
