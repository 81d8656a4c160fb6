package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

func newStatusCommand(o *options) *cobra.Command {
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Summarize the WebhookEndpoints of a namespace",
		Long: `Print one row per WebhookEndpoint: its Ready condition and reason, whether its circuit breaker is
open, its last delivery (age, HTTP status, outcome), and how many DocumentEvents of its namespace
are still pending to it and how many deliveries to it failed.

A delivery counts for an endpoint only when it was made to that very object: its delivery id is derived
from the event's and the endpoint's UIDs. Deliveries to an endpoint that was deleted, or deleted and
created again under the same name, are counted below the table, by endpoint name, instead.`,
		Example: `  kubectl webhook status -n acme
  kubectl webhook status -A`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, "status takes no arguments")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), o, allNamespaces)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the endpoints of all namespaces")
	return cmd
}

// endpointKey names an endpoint across namespaces.
type endpointKey struct{ namespace, name string }

// deliveryCounts are the per-endpoint totals of the status table.
type deliveryCounts struct{ pending, failed int }

// formerCounts are the pending and failed deliveries to an endpoint name that are not counted in the
// table, because they were made to an endpoint that no longer exists under that name.
type formerCounts struct {
	deliveryCounts
	// recreated is true when an endpoint of that name exists now, a newer one.
	recreated bool
}

func runStatus(ctx context.Context, o *options, allNamespaces bool) error {
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	if allNamespaces {
		ns = ""
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	endpoints, err := listEndpoints(ctx, c, ns)
	if err != nil {
		return fmt.Errorf("list WebhookEndpoints: %w", err)
	}

	// A Delivered event has only delivered deliveries, so it adds to no count: let the server leave
	// those out, which are usually nearly all of them.
	events, err := listEvents(ctx, c, ns,
		fields.OneTermNotEqualSelector("status.phase", string(webhooksv1alpha1.DocumentEventDelivered)),
		func(ev *webhooksv1alpha1.DocumentEvent) bool {
			return ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered
		})
	if err != nil {
		return fmt.Errorf("list DocumentEvents: %w", err)
	}
	counts, former := countDeliveries(endpoints, events)

	if len(endpoints) == 0 {
		where := "in " + ns + " namespace"
		if allNamespaces {
			where = "in any namespace"
		}
		if _, err := fmt.Fprintf(o.streams.ErrOut, "No WebhookEndpoints found %s.\n", where); err != nil {
			return err
		}
	} else if err := printStatusTable(o.streams.Out, endpoints, counts, allNamespaces, time.Now()); err != nil {
		return err
	}
	return printFormer(o.streams.Out, former, allNamespaces, len(endpoints) > 0)
}

// countDeliveries adds up the pending and failed deliveries per endpoint. A delivery counts for an
// endpoint only when its delivery id is the one the operator gives deliveries to that endpoint object,
// so that an endpoint deleted and created again under the same name is not charged with what was sent
// to the earlier one; those deliveries, and those to deleted endpoints, are counted in former.
func countDeliveries(endpoints []webhooksv1alpha1.WebhookEndpoint, events []webhooksv1alpha1.DocumentEvent) (
	map[endpointKey]*deliveryCounts, map[endpointKey]*formerCounts) {
	byKey := make(map[endpointKey]*webhooksv1alpha1.WebhookEndpoint, len(endpoints))
	counts := make(map[endpointKey]*deliveryCounts, len(endpoints))
	for i := range endpoints {
		key := endpointKey{endpoints[i].Namespace, endpoints[i].Name}
		byKey[key], counts[key] = &endpoints[i], &deliveryCounts{}
	}
	former := map[endpointKey]*formerCounts{}
	for i := range events {
		ev := &events[i]
		for j := range ev.Status.Deliveries {
			d := &ev.Status.Deliveries[j]
			pending, failed := !d.Phase.IsFinal(), d.Phase == webhooksv1alpha1.DeliveryFailed
			if !pending && !failed {
				continue
			}
			key := endpointKey{ev.Namespace, d.Endpoint}
			var n *deliveryCounts
			if ep := byKey[key]; ep != nil && deliveryBelongsTo(ev, d, ep) {
				n = counts[key]
			} else {
				f := former[key]
				if f == nil {
					f = &formerCounts{recreated: ep != nil}
					former[key] = f
				}
				n = &f.deliveryCounts
			}
			if failed {
				n.failed++
			} else {
				n.pending++
			}
		}
	}
	return counts, former
}

// printFormer writes, after the table, the deliveries that the table does not count because their
// endpoint was deleted or re-created, per endpoint name.
func printFormer(out io.Writer, former map[endpointKey]*formerCounts, allNamespaces, afterTable bool) error {
	if len(former) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(former), func(a, b endpointKey) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	var total deliveryCounts
	for _, key := range keys {
		total.pending += former[key].pending
		total.failed += former[key].failed
	}
	var b strings.Builder
	if afterTable {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Deliveries to deleted or re-created endpoints, not counted above: %s\n", total)
	for _, key := range keys {
		f := former[key]
		name := key.name
		if allNamespaces {
			name = key.namespace + "/" + key.name
		}
		what := "deleted"
		if f.recreated {
			what = "earlier endpoint, since re-created"
		}
		fmt.Fprintf(&b, "  %s (%s): %s\n", name, what, f.deliveryCounts)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func (n deliveryCounts) String() string {
	return fmt.Sprintf("%d pending, %d failed", n.pending, n.failed)
}

func printStatusTable(out io.Writer, endpoints []webhooksv1alpha1.WebhookEndpoint, counts map[endpointKey]*deliveryCounts,
	allNamespaces bool, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	if allNamespaces {
		_, _ = fmt.Fprint(w, "NAMESPACE\t")
	}
	_, _ = fmt.Fprintln(w, "NAME\tREADY\tREASON\tCIRCUIT\tLAST DELIVERY\tPENDING\tFAILED")
	for i := range endpoints {
		ep := &endpoints[i]
		ready, reason, circuit := "Unknown", "-", "closed"
		if cond := meta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition); cond != nil {
			ready = string(cond.Status)
			if cond.Reason != "" {
				reason = cond.Reason
			}
			if cond.Reason == webhooksv1alpha1.CircuitOpenReason {
				circuit = "open"
			}
		}
		n := counts[endpointKey{ep.Namespace, ep.Name}]
		if allNamespaces {
			_, _ = fmt.Fprintf(w, "%s\t", ep.Namespace)
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			ep.Name, ready, reason, circuit, lastDelivery(ep.Status.LastDelivery, now), n.pending, n.failed)
	}
	return w.Flush()
}

// lastDelivery formats the last attempt as "<age> <HTTP status> ok|failed in <duration>", "-" for none.
func lastDelivery(d *webhooksv1alpha1.LastDelivery, now time.Time) string {
	if d == nil || d.Time.IsZero() {
		return "-"
	}
	code := "-"
	if d.StatusCode != 0 {
		code = fmt.Sprint(d.StatusCode)
	}
	outcome := "failed"
	if d.Success {
		outcome = "ok"
	}
	if d.Duration != nil {
		outcome += " in " + recordedDuration(d.Duration)
	}
	return fmt.Sprintf("%s ago %s %s", duration.HumanDuration(now.Sub(d.Time.Time)), code, outcome)
}
