package main

import (
	"context"
	"fmt"
	"io"
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
are still pending to it and how many deliveries to it failed.`,
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
	if len(endpoints) == 0 {
		where := "in " + ns + " namespace"
		if allNamespaces {
			where = "in any namespace"
		}
		_, err := fmt.Fprintf(o.streams.ErrOut, "No WebhookEndpoints found %s.\n", where)
		return err
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
	counts := map[endpointKey]*deliveryCounts{}
	for i := range endpoints {
		counts[endpointKey{endpoints[i].Namespace, endpoints[i].Name}] = &deliveryCounts{}
	}
	for i := range events {
		for _, d := range events[i].Status.Deliveries {
			n := counts[endpointKey{events[i].Namespace, d.Endpoint}]
			if n == nil {
				continue // the endpoint was deleted
			}
			switch {
			case d.Phase == webhooksv1alpha1.DeliveryFailed:
				n.failed++
			case !d.Phase.IsFinal():
				n.pending++
			}
		}
	}
	return printStatusTable(o.streams.Out, endpoints, counts, allNamespaces, time.Now())
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

// lastDelivery formats the last attempt as "<age> <HTTP status> ok|failed", "-" for none.
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
	return fmt.Sprintf("%s ago %s %s", duration.HumanDuration(now.Sub(d.Time.Time)), code, outcome)
}
