package main

import (
	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/routing"
)

// The operator decides which endpoint a delivery belongs to by its delivery id, and which endpoints an
// event targets by its selector and the endpoints' filters. The plugin uses the same rules
// (internal/routing), so that it can tell a delivery to an endpoint from one to an earlier endpoint of
// the same name, and say why a redelivery did not restart a delivery.

// deliveryBelongsTo reports whether the delivery was made to this endpoint rather than to an earlier
// endpoint of the same name.
func deliveryBelongsTo(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	return d.Endpoint == ep.Name && d.DeliveryID == routing.DeliveryID(ev.UID, ep.UID)
}

// endpointMatches reports whether the operator would send the event to the endpoint. An event whose
// selector does not parse matches nothing: the operator fails it.
func endpointMatches(ev *webhooksv1alpha1.DocumentEvent, ep *webhooksv1alpha1.WebhookEndpoint) bool {
	selector, err := routing.Selector(ev)
	return err == nil && routing.Targets(ev, selector, ep)
}
