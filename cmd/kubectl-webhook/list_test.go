package main

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

func isFailed(ev *webhooksv1alpha1.DocumentEvent) bool {
	return ev.Status.Phase == webhooksv1alpha1.DocumentEventFailed
}

var failedSelector = fields.OneTermEqualSelector("status.phase", string(webhooksv1alpha1.DocumentEventFailed))

// countingClient wraps the administrator's client; reject makes it answer field-selected lists with
// 400 Bad Request, as an API server without selectable fields does.
func countingClient(t *testing.T, reject bool) (client.Client, *[]string) {
	t.Helper()
	inner, err := client.NewWithWatch(cluster.Config, client.Options{Scheme: localcluster.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	return interceptor.NewClient(inner, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			o := (&client.ListOptions{}).ApplyOptions(opts)
			selector := ""
			if o.FieldSelector != nil {
				selector = o.FieldSelector.String()
			}
			calls = append(calls, selector)
			if reject && selector != "" {
				return apierrors.NewBadRequest(`Unable to find "webhooks.1flow.io/v1alpha1, Resource=documentevents" that match label selector "", field selector "` +
					selector + `": field label not supported: status.phase`)
			}
			return c.List(ctx, list, opts...)
		},
	}), &calls
}

func seedPhases(t *testing.T) string {
	t.Helper()
	ns := newNamespace(t)
	newEvent(t, ns, "failed-1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	newEvent(t, ns, "failed-2", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "new", nil)
	return ns
}

func names(events []webhooksv1alpha1.DocumentEvent) []string {
	out := make([]string, 0, len(events))
	for _, ev := range events {
		out = append(out, ev.Name)
	}
	return out
}

func TestListEventsServerSideSelector(t *testing.T) {
	ns := seedPhases(t)
	c, calls := countingClient(t, false)
	events, err := webhookops.ListEvents(context.Background(), c, ns, failedSelector, isFailed)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(events); len(got) != 2 || got[0] != "failed-1" || got[1] != "failed-2" {
		t.Errorf("events = %v, want failed-1 failed-2", got)
	}
	// The API server applied the selector: one request, no fallback.
	if len(*calls) != 1 || (*calls)[0] != "status.phase=Failed" {
		t.Errorf("list requests = %q, want one with status.phase=Failed", *calls)
	}
}

func TestListEventsFallsBackWhenSelectorRejected(t *testing.T) {
	ns := seedPhases(t)
	c, calls := countingClient(t, true)
	events, err := webhookops.ListEvents(context.Background(), c, ns, failedSelector, isFailed)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(events); len(got) != 2 || got[0] != "failed-1" || got[1] != "failed-2" {
		t.Errorf("events = %v, want failed-1 failed-2", got)
	}
	if len(*calls) != 2 || (*calls)[0] == "" || (*calls)[1] != "" {
		t.Errorf("list requests = %q, want a selected one, then an unselected one", *calls)
	}
}
