package webhookops

import (
	"context"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// PageSize bounds each list response, so that namespaces with many events are read in pieces.
const PageSize = 500

// ListEvents returns the DocumentEvents of the namespace ("" for all namespaces) for which keep is true.
// The server filters with the field selector (status.phase is a selectable field of the CRD); when it
// rejects the selector, as API servers without selectable fields do, every event is listed and keep
// alone filters. keep must therefore test what the selector tests.
func ListEvents(ctx context.Context, c client.Client, namespace string, selector fields.Selector,
	keep func(*webhooksv1alpha1.DocumentEvent) bool) ([]webhooksv1alpha1.DocumentEvent, error) {
	var opts []client.ListOption
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	events, err := ListEventPages(ctx, c, append(opts, client.MatchingFieldsSelector{Selector: selector}))
	if apierrors.IsBadRequest(err) {
		events, err = ListEventPages(ctx, c, opts)
	}
	if err != nil {
		return nil, err
	}
	kept := events[:0]
	for i := range events {
		if keep(&events[i]) {
			kept = append(kept, events[i])
		}
	}
	sort.SliceStable(kept, func(i, j int) bool {
		if kept[i].Namespace != kept[j].Namespace {
			return kept[i].Namespace < kept[j].Namespace
		}
		return kept[i].Name < kept[j].Name
	})
	return kept, nil
}

// ListEventPages lists every DocumentEvent matching opts, PageSize at a time.
func ListEventPages(ctx context.Context, c client.Client, opts []client.ListOption) ([]webhooksv1alpha1.DocumentEvent, error) {
	var all []webhooksv1alpha1.DocumentEvent
	cont := ""
	for {
		list := &webhooksv1alpha1.DocumentEventList{}
		pageOpts := append([]client.ListOption{client.Limit(PageSize), client.Continue(cont)}, opts...)
		if err := c.List(ctx, list, pageOpts...); err != nil {
			return nil, err
		}
		all = append(all, list.Items...)
		if cont = list.Continue; cont == "" {
			return all, nil
		}
	}
}

// ListEndpoints returns the WebhookEndpoints of the namespace ("" for all namespaces), sorted by
// namespace and name.
func ListEndpoints(ctx context.Context, c client.Client, namespace string) ([]webhooksv1alpha1.WebhookEndpoint, error) {
	var all []webhooksv1alpha1.WebhookEndpoint
	cont := ""
	for {
		list := &webhooksv1alpha1.WebhookEndpointList{}
		opts := []client.ListOption{client.Limit(PageSize), client.Continue(cont)}
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return nil, err
		}
		all = append(all, list.Items...)
		if cont = list.Continue; cont == "" {
			break
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Namespace != all[j].Namespace {
			return all[i].Namespace < all[j].Namespace
		}
		return all[i].Name < all[j].Name
	})
	return all, nil
}
