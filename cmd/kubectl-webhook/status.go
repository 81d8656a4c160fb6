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
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// statusOptions are the flags of status.
type statusOptions struct {
	*options
	allNamespaces bool
}

func newStatusCommand(o *options) *cobra.Command {
	so := &statusOptions{options: o}
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
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              runOptions(so),
	}
	cmd.Flags().BoolVarP(&so.allNamespaces, "all-namespaces", "A", false, "List the endpoints of all namespaces")
	return cmd
}

// Complete has nothing to add: status takes no arguments (Args made sure of it).
func (so *statusOptions) Complete(*cobra.Command, []string) error { return nil }

// Validate has nothing to check: every combination of -n and -A is valid (-A wins).
func (so *statusOptions) Validate() error { return nil }

// Run prints the table of the endpoints and the deliveries not counted in it.
func (so *statusOptions) Run(ctx context.Context) error {
	o, allNamespaces := so.options, so.allNamespaces
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
	endpoints, err := webhookops.ListEndpoints(ctx, c, ns)
	if err != nil {
		return fmt.Errorf("list WebhookEndpoints: %w", err)
	}

	// A Delivered event has only delivered deliveries, so it adds to no count: let the server leave
	// those out, which are usually nearly all of them.
	events, err := webhookops.ListEvents(ctx, c, ns,
		fields.OneTermNotEqualSelector("status.phase", string(webhooksv1alpha1.DocumentEventDelivered)),
		func(ev *webhooksv1alpha1.DocumentEvent) bool {
			return ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered
		})
	if err != nil {
		return fmt.Errorf("list DocumentEvents: %w", err)
	}
	counts, former := webhookops.CountDeliveries(endpoints, events)

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

// printFormer writes, after the table, the deliveries that the table does not count because their
// endpoint was deleted or re-created, per endpoint name.
func printFormer(out io.Writer, former map[webhookops.EndpointKey]*webhookops.FormerCounts, allNamespaces, afterTable bool) error {
	if len(former) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(former), func(a, b webhookops.EndpointKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var total webhookops.Counts
	for _, key := range keys {
		total.Pending += former[key].Pending
		total.Failed += former[key].Failed
	}
	var b strings.Builder
	if afterTable {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Deliveries to deleted or re-created endpoints, not counted above: %s\n", countsText(total))
	for _, key := range keys {
		f := former[key]
		name := key.Name
		if allNamespaces {
			name = key.Namespace + "/" + key.Name
		}
		what := "deleted"
		if f.Recreated {
			what = "earlier endpoint, since re-created"
		}
		fmt.Fprintf(&b, "  %s (%s): %s\n", name, what, countsText(f.Counts))
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// countsText shows pending and failed counts as the lines below the table do.
func countsText(n webhookops.Counts) string {
	return fmt.Sprintf("%d pending, %d failed", n.Pending, n.Failed)
}

func printStatusTable(out io.Writer, endpoints []webhooksv1alpha1.WebhookEndpoint, counts map[webhookops.EndpointKey]*webhookops.Counts,
	allNamespaces bool, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	if allNamespaces {
		_, _ = fmt.Fprint(w, "NAMESPACE\t")
	}
	_, _ = fmt.Fprintln(w, "NAME\tREADY\tREASON\tCIRCUIT\tLAST DELIVERY\tPENDING\tFAILED")
	for i := range endpoints {
		ep := &endpoints[i]
		readiness, circuit := webhookops.EndpointReadiness(ep), "closed"
		if readiness.CircuitOpen {
			circuit = "open"
		}
		n := counts[webhookops.EndpointKey{Namespace: ep.Namespace, Name: ep.Name}]
		if allNamespaces {
			_, _ = fmt.Fprintf(w, "%s\t", ep.Namespace)
		}
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n",
			ep.Name, readiness.Status, readiness.Reason, circuit, lastDelivery(ep.Status.LastDelivery, now), n.Pending, n.Failed)
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
		outcome += " in " + webhookops.RecordedDuration(d.Duration)
	}
	return fmt.Sprintf("%s ago %s %s", duration.HumanDuration(now.Sub(d.Time.Time)), code, outcome)
}
