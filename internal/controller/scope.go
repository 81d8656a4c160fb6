package controller

import (
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// WatchScope is what one manager serves: the namespaces (all when empty) and, to split the operator
// into shards, a label selector on DocumentEvents and WebhookEndpoints (all when nil). An event only
// reaches the endpoints of its own shard.
type WatchScope struct {
	Namespaces []string
	Labels     labels.Selector
}

// unfinishedEvents selects, server-side, the DocumentEvents that still need work: status.phase is a
// selectable field of the CRD. An event that finishes leaves the manager's cache, so its memory follows
// the work in flight rather than the history a team keeps; finishedEventsSource watches the others
// without keeping them, for their TTL and for redelivery requests.
var unfinishedEvents = fields.AndSelectors(
	fields.OneTermNotEqualSelector(phaseField, string(webhooksv1alpha1.DocumentEventDelivered)),
	fields.OneTermNotEqualSelector(phaseField, string(webhooksv1alpha1.DocumentEventFailed)),
)

const phaseField = "status.phase"

// CacheOptions restricts the manager's cache to the scope, and DocumentEvents to those that still need
// work. managedFields are never read (status is written with merge patches), so they are dropped.
func (w WatchScope) CacheOptions() cache.Options {
	opts := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&webhooksv1alpha1.DocumentEvent{}:   {Field: unfinishedEvents, Label: w.Labels},
			&webhooksv1alpha1.WebhookEndpoint{}: {Label: w.Labels},
		},
	}
	if len(w.Namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range w.Namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// listOptions are the scope's options for one namespace ("" for all) and extra field selector.
func (w WatchScope) listOptions(namespace string, field fields.Selector) []client.ListOption {
	opts := []client.ListOption{client.InNamespace(namespace), client.MatchingFieldsSelector{Selector: field}}
	if w.Labels != nil {
		opts = append(opts, client.MatchingLabelsSelector{Selector: w.Labels})
	}
	return opts
}

// namespaces returns the namespaces to list one by one: "" stands for all.
func (w WatchScope) namespaces() []string {
	if len(w.Namespaces) == 0 {
		return []string{""}
	}
	return w.Namespaces
}
