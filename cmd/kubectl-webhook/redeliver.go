package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// Values of --scope.
const (
	scopeFailed = webhooksv1alpha1.RedeliverScopeFailed
	scopeAll    = "all"
)

// redeliverOptions are the events and the flags of redeliver.
type redeliverOptions struct {
	*options
	cmd           *cobra.Command
	names         []string
	failed        bool
	since         time.Duration
	sinceSet      bool // --since was given
	scope         string
	scopeSet      bool // --scope was given
	allNamespaces bool
	wait          time.Duration
}

// summaryThreshold is the most events --failed reports one by one; beyond it, it prints a summary.
const summaryThreshold = 10

func newRedeliverCommand(o *options) *cobra.Command {
	ro := &redeliverOptions{options: o}
	cmd := &cobra.Command{
		Use:   "redeliver (EVENT... | --failed [--since DURATION])",
		Short: "Send DocumentEvents again and report what the operator restarted",
		Long: `Request the redelivery of DocumentEvents, wait for the operator to act on it, and report what it did.

The operator sends each event again, with fresh attempts, to all its target endpoints, or with --scope
failed only to the endpoints whose delivery failed. The request is the annotation
` + webhooksv1alpha1.RedeliverRequestedAtAnnotation + `=<now> (and ` + webhooksv1alpha1.RedeliverScopeAnnotation + `
for --scope); without --scope a scope left by an earlier request is removed, so every delivery is sent.

A redelivery goes to the endpoints that exist now. A delivery keeps its delivery id (X-Webhook-Id) when
its endpoint is unchanged; a delivery whose endpoint was deleted and created again under the same name
goes to the new endpoint under a new delivery id; a delivery whose endpoint is gone, or no longer matches
the event, is not restarted and stays as it was. A full redelivery (no --scope failed) also adds the
endpoints that match the event now and did not before.

Name the events, or pick every event whose phase is Failed with --failed, optionally only those created
within --since, in the namespace or with -A in all namespaces.

After setting the annotation the command waits up to --wait until the operator records the request in
status.lastRedeliveryRequest, then prints, per event, which deliveries were restarted (and which under a
new delivery id), which were not and why. With --failed and more than ` + fmt.Sprint(summaryThreshold) + ` events it prints a
summary instead, with the reasons grouped. --wait=0 only sets the annotation and reports the request as
not confirmed.

Exit code 0: the operator confirmed every request (or a newer request replaced it; with --wait=0: every
request was set), even when some deliveries could not be restarted, as reported. Exit code 1: an event was not found or could not be
patched, or the operator did not confirm a request within --wait; such a request stays on the event and
the operator acts on it when it gets to it.`,
		Example: `  # Redeliver two events and report what was restarted
  kubectl webhook redeliver doc-invoice-1042 doc-receipt-7 -n acme

  # Redeliver every failed event of the last two hours, only to the endpoints that failed
  kubectl webhook redeliver --failed --since 2h --scope failed -n acme

  # Redeliver every failed event in all namespaces, waiting up to two minutes for the operator
  kubectl webhook redeliver --failed -A --wait 2m

  # Only set the annotation, do not wait
  kubectl webhook redeliver doc-invoice-1042 -n acme --wait=0`,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if ro.failed { // --failed picks the events
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeNames(o, eventListKind, 0)(cmd, args, toComplete)
		},
		RunE: runOptions(ro),
	}
	cmd.Flags().BoolVar(&ro.failed, "failed", false, "Redeliver every DocumentEvent whose status.phase is Failed")
	cmd.Flags().DurationVar(&ro.since, "since", 0, "With --failed, only events created within this duration (for example 2h)")
	cmd.Flags().StringVar(&ro.scope, "scope", "", `Redeliver only the failed deliveries of each event ("failed") or all of them ("all")`)
	cmd.Flags().BoolVarP(&ro.allNamespaces, "all-namespaces", "A", false, "With --failed, look in all namespaces")
	cmd.Flags().DurationVar(&ro.wait, "wait", 30*time.Second,
		"How long to wait for the operator to act on the requests; 0 sets the annotations and returns without confirmation")
	return cmd
}

// Complete takes the event names and notes which flags were given.
func (ro *redeliverOptions) Complete(cmd *cobra.Command, args []string) error {
	ro.cmd = cmd
	ro.names = args
	ro.sinceSet = cmd.Flags().Changed("since")
	ro.scopeSet = cmd.Flags().Changed("scope")
	return nil
}

// Validate checks that the events are named or picked with --failed, and the flags that go with them.
func (ro *redeliverOptions) Validate() error {
	cmd := ro.cmd
	switch {
	case len(ro.names) > 0 && ro.failed:
		return usageError(cmd, "give DocumentEvent names or --failed, not both")
	case len(ro.names) == 0 && !ro.failed:
		return usageError(cmd, "give at least one DocumentEvent name, or --failed")
	case ro.since < 0:
		return usageError(cmd, "--since must not be negative")
	case ro.sinceSet && !ro.failed:
		return usageError(cmd, "--since works only with --failed")
	case ro.allNamespaces && !ro.failed:
		return usageError(cmd, "-A/--all-namespaces works only with --failed")
	case ro.scopeSet && ro.scope != scopeFailed && ro.scope != scopeAll:
		return usageError(cmd, "--scope must be %q or %q, not %q", scopeFailed, scopeAll, ro.scope)
	case ro.wait < 0:
		return usageError(cmd, "--wait must not be negative")
	}
	return nil
}

// Run requests the redeliveries, waits for the operator to act on them and reports what it did.
func (ro *redeliverOptions) Run(ctx context.Context) error {
	o, names := ro.options, ro.names
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	// The namespace to list when reading many events at once: the one of the events, or all of them.
	listNamespace := ns
	if ro.allNamespaces {
		listNamespace = ""
	}
	targets := make([]types.NamespacedName, 0, len(names))
	for _, name := range names {
		targets = append(targets, types.NamespacedName{Namespace: ns, Name: name})
	}
	if ro.failed {
		if targets, err = ro.failedEvents(ctx, c, ns, listNamespace, o.streams.ErrOut); err != nil {
			return err
		}
	}

	requestedAt := webhookops.RequestTime()
	requests, failures, err := ro.request(ctx, c, targets, requestedAt, o.streams.ErrOut)
	if err != nil {
		return err
	}
	if ro.wait > 0 && len(requests) > 0 {
		if err := awaitRedeliveries(ctx, c, requests, requestedAt, listNamespace, ro.wait); err != nil {
			return fmt.Errorf("wait for the operator to act on the redelivery (requested for %d %s, which the operator "+
				"acts on when it gets to them): %w", len(requests), plural(len(requests), "DocumentEvent"), err)
		}
		if err := classifyRequests(ctx, c, requests, listNamespace, ro.allNamespaces, o.streams.ErrOut); err != nil {
			return err
		}
	}
	totals, err := ro.report(o.streams.Out, requests)
	if err != nil {
		return err
	}

	var problems []string
	if failures > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d %s could not be redelivered",
			failures, len(targets), plural(len(targets), "DocumentEvent")))
	}
	if ro.wait > 0 && totals.unconfirmed > 0 {
		problems = append(problems, fmt.Sprintf("the operator did not confirm %d of %d redelivery %s within %s "+
			"(status.lastRedeliveryRequest is not %s); is the webhook-operator running? The requests stay on the events "+
			"and are acted on when the operator gets to them",
			totals.unconfirmed, len(requests), plural(len(requests), "request"), ro.wait, requestedAt))
	}
	if totals.gone > 0 {
		problems = append(problems, fmt.Sprintf("%d %s deleted before the operator confirmed the redelivery",
			totals.gone, plural(totals.gone, "DocumentEvent was", "DocumentEvents were")))
	}
	if len(problems) > 0 {
		return &exitError{code: 1, msg: strings.Join(problems, "\nerror: ")}
	}
	return nil
}

// failedEvents returns the events of --failed: those whose phase is Failed, created within --since.
func (ro *redeliverOptions) failedEvents(ctx context.Context, c client.Client, ns, listNamespace string,
	errOut io.Writer) ([]types.NamespacedName, error) {
	// creationTimestamp has second precision: compare whole seconds, so that an event created
	// within --since is never left out because its timestamp was truncated.
	cutoff := time.Now().Add(-ro.since).Truncate(time.Second)
	events, err := webhookops.ListEvents(ctx, c, listNamespace,
		fields.OneTermEqualSelector("status.phase", string(webhooksv1alpha1.DocumentEventFailed)),
		func(ev *webhooksv1alpha1.DocumentEvent) bool {
			if ev.Status.Phase != webhooksv1alpha1.DocumentEventFailed {
				return false
			}
			return ro.since == 0 || !ev.CreationTimestamp.Time.Before(cutoff)
		})
	if err != nil {
		return nil, fmt.Errorf("list failed DocumentEvents: %w", err)
	}
	targets := make([]types.NamespacedName, 0, len(events))
	for _, ev := range events {
		targets = append(targets, types.NamespacedName{Namespace: ev.Namespace, Name: ev.Name})
	}
	if len(events) == 0 {
		where := "in namespace " + ns
		if ro.allNamespaces {
			where = "in any namespace"
		}
		if ro.since > 0 {
			where += " created within " + ro.since.String()
		}
		_, _ = fmt.Fprintf(errOut, "No Failed DocumentEvents found %s.\n", where)
	}
	return targets, nil
}

// request sets the redelivery annotations on each target. It reports on errOut the events it could not
// patch, and returns a request for each other one, with the event as the patch left it.
func (ro *redeliverOptions) request(ctx context.Context, c client.Client, targets []types.NamespacedName, requestedAt string,
	errOut io.Writer) (requests []*redeliveryRequest, failures int, err error) {
	patch, err := webhookops.RedeliveryPatch(requestedAt, ro.scope)
	if err != nil {
		return nil, 0, err
	}
	requests = make([]*redeliveryRequest, 0, len(targets))
	for _, target := range targets {
		ev := &webhooksv1alpha1.DocumentEvent{}
		ev.Name, ev.Namespace = target.Name, target.Namespace
		if err := c.Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch)); err != nil {
			failures++
			if apierrors.IsNotFound(err) {
				err = fmt.Errorf("not found in namespace %q", target.Namespace)
			}
			_, _ = fmt.Fprintf(errOut, "error: documentevent/%s%s: %v\n", target.Name, ro.where(target), err)
			continue
		}
		// The patch answers with the event as it is now: the deliveries the operator is about to act on.
		r := &redeliveryRequest{key: target, uid: ev.UID, before: ev.DeepCopy(), state: requestUnconfirmed}
		if ro.wait > 0 {
			r.state = requestWaiting
		}
		requests = append(requests, r)
	}
	return requests, failures, nil
}

// where names the namespace of an event with -A, where the events come from several.
func (ro *redeliverOptions) where(key types.NamespacedName) string {
	if ro.allNamespaces {
		return " in namespace " + key.Namespace
	}
	return ""
}

// report prints what happened to the requests: per event, or, for --failed with many events, a summary.
func (ro *redeliverOptions) report(out io.Writer, requests []*redeliveryRequest) (outcomeTotals, error) {
	totals := totalOutcomes(requests, ro.allNamespaces)
	summarize := ro.failed && len(requests) > summaryThreshold
	if !summarize {
		for _, r := range requests {
			if err := printRequest(out, r, ro.where(r.key), ro.wait); err != nil {
				return totals, err
			}
		}
	}
	if _, err := fmt.Fprintln(out, totals.summaryLine(ro.wait)); err != nil {
		return totals, err
	}
	if summarize {
		return totals, totals.printSummaryDetail(out, ro.wait)
	}
	return totals, nil
}

// Polling of awaitRedeliveries: a few events are read one by one; more are found in one list of their
// namespace (or of all namespaces), read less often.
const (
	getPollInterval  = 250 * time.Millisecond
	listPollInterval = time.Second
	maxGetsPerPoll   = 10
)

// awaitRedeliveries reads the events until the operator has confirmed every request (or a request was
// replaced, or its event deleted), or timeout has passed; the requests still waiting then become
// unconfirmed. It returns an error only when the events cannot be read at all.
func awaitRedeliveries(ctx context.Context, c client.Client, requests []*redeliveryRequest, value, listNamespace string,
	timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	canList := true
	for {
		var waiting []*redeliveryRequest
		for _, r := range requests {
			if r.state == requestWaiting {
				waiting = append(waiting, r)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		interval := getPollInterval
		if canList && len(waiting) > maxGetsPerPoll {
			interval = listPollInterval
			var opts []client.ListOption
			if listNamespace != "" {
				opts = append(opts, client.InNamespace(listNamespace))
			}
			events, err := webhookops.ListEventPages(ctx, c, opts)
			switch {
			case err == nil:
				byKey := make(map[types.NamespacedName]*webhooksv1alpha1.DocumentEvent, len(events))
				for i := range events {
					byKey[client.ObjectKeyFromObject(&events[i])] = &events[i]
				}
				for _, r := range waiting {
					r.observe(byKey[r.key], value)
				}
			case apierrors.IsForbidden(err):
				canList = false // read them one by one
				continue
			case ctx.Err() != nil:
				return ctx.Err()
			}
			// Any other error may pass: try again at the next poll.
		} else {
			for _, r := range waiting {
				ev := &webhooksv1alpha1.DocumentEvent{}
				err := c.Get(ctx, r.key, ev)
				switch {
				case err == nil:
					r.observe(ev, value)
				case apierrors.IsNotFound(err):
					r.observe(nil, value)
				case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
					return err
				case ctx.Err() != nil:
					return ctx.Err()
				}
			}
		}
		if !time.Now().Before(deadline) {
			for _, r := range requests {
				if r.state == requestWaiting {
					r.state = requestUnconfirmed
				}
			}
			return nil
		}
		timer := time.NewTimer(min(interval, time.Until(deadline)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// classifyRequests works out, for every confirmed request, what the operator did to each delivery. It
// reads the WebhookEndpoints once; when they cannot be read it says so on errOut and tells restarted
// deliveries from the status alone.
func classifyRequests(ctx context.Context, c client.Client, requests []*redeliveryRequest, listNamespace string,
	allNamespaces bool, errOut io.Writer) error {
	confirmed := slices.ContainsFunc(requests, func(r *redeliveryRequest) bool { return r.state == requestConfirmed })
	if !confirmed {
		return nil
	}
	var byNamespace map[string]map[string]*webhooksv1alpha1.WebhookEndpoint
	endpoints, err := webhookops.ListEndpoints(ctx, c, listNamespace)
	switch {
	case err == nil:
		byNamespace = map[string]map[string]*webhooksv1alpha1.WebhookEndpoint{}
		for i := range endpoints {
			ep := &endpoints[i]
			if byNamespace[ep.Namespace] == nil {
				byNamespace[ep.Namespace] = map[string]*webhooksv1alpha1.WebhookEndpoint{}
			}
			byNamespace[ep.Namespace][ep.Name] = ep
		}
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		_, _ = fmt.Fprintf(errOut, "warning: cannot list WebhookEndpoints (%v); deliveries that were not restarted are reported without the reason\n", err)
	default:
		return fmt.Errorf("list WebhookEndpoints: %w", err)
	}
	for _, r := range requests {
		if r.state != requestConfirmed {
			continue
		}
		var inNamespace map[string]*webhooksv1alpha1.WebhookEndpoint
		if byNamespace != nil {
			inNamespace = byNamespace[r.key.Namespace]
			if inNamespace == nil {
				inNamespace = map[string]*webhooksv1alpha1.WebhookEndpoint{} // none: every endpoint is gone
			}
		}
		label := func(name string) string {
			if allNamespaces {
				return r.key.Namespace + "/" + name
			}
			return name
		}
		r.outcomes, r.notAdded = classifyRedelivery(r.before, r.latest, inNamespace, label)
	}
	return nil
}

// plural returns word for one and word+"s" otherwise, or, given both forms, the one that fits n.
func plural(n int, forms ...string) string {
	one, many := forms[0], forms[0]+"s"
	if len(forms) > 1 {
		many = forms[1]
	}
	if n == 1 {
		return one
	}
	return many
}
