package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// Values of --scope.
const (
	scopeFailed = webhooksv1alpha1.RedeliverScopeFailed
	scopeAll    = "all"
)

type redeliverOptions struct {
	failed        bool
	since         time.Duration
	scope         string
	allNamespaces bool
}

func newRedeliverCommand(o *options) *cobra.Command {
	ro := &redeliverOptions{}
	cmd := &cobra.Command{
		Use:   "redeliver (EVENT... | --failed [--since DURATION])",
		Short: "Send DocumentEvents again",
		Long: `Request the redelivery of DocumentEvents.

The operator sends each event again, with the same X-Webhook-Id and fresh attempts, to all its target
endpoints, or with --scope failed only to the endpoints whose delivery failed. The request is the
annotation ` + webhooksv1alpha1.RedeliverRequestedAtAnnotation + `=<now> (and ` + webhooksv1alpha1.RedeliverScopeAnnotation + `
for --scope); without --scope a scope left by an earlier request is removed, so every delivery is sent.

Name the events, or pick every event whose phase is Failed with --failed, optionally only those created
within --since, in the namespace or with -A in all namespaces.`,
		Example: `  # Redeliver two events
  kubectl webhook redeliver doc-invoice-1042 doc-receipt-7 -n acme

  # Redeliver every failed event of the last two hours, only to the endpoints that failed
  kubectl webhook redeliver --failed --since 2h --scope failed -n acme

  # Redeliver every failed event in all namespaces
  kubectl webhook redeliver --failed -A`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ro.validate(cmd, args); err != nil {
				return err
			}
			return runRedeliver(cmd.Context(), o, ro, args)
		},
	}
	cmd.Flags().BoolVar(&ro.failed, "failed", false, "Redeliver every DocumentEvent whose status.phase is Failed")
	cmd.Flags().DurationVar(&ro.since, "since", 0, "With --failed, only events created within this duration (for example 2h)")
	cmd.Flags().StringVar(&ro.scope, "scope", "", `Redeliver only the failed deliveries of each event ("failed") or all of them ("all")`)
	cmd.Flags().BoolVarP(&ro.allNamespaces, "all-namespaces", "A", false, "With --failed, look in all namespaces")
	return cmd
}

func (ro *redeliverOptions) validate(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) > 0 && ro.failed:
		return usageError(cmd, "give DocumentEvent names or --failed, not both")
	case len(args) == 0 && !ro.failed:
		return usageError(cmd, "give at least one DocumentEvent name, or --failed")
	case ro.since < 0:
		return usageError(cmd, "--since must not be negative")
	case cmd.Flags().Changed("since") && !ro.failed:
		return usageError(cmd, "--since works only with --failed")
	case ro.allNamespaces && !ro.failed:
		return usageError(cmd, "-A/--all-namespaces works only with --failed")
	case cmd.Flags().Changed("scope") && ro.scope != scopeFailed && ro.scope != scopeAll:
		return usageError(cmd, "--scope must be %q or %q, not %q", scopeFailed, scopeAll, ro.scope)
	}
	return nil
}

func runRedeliver(ctx context.Context, o *options, ro *redeliverOptions, names []string) error {
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}

	targets := make([]types.NamespacedName, 0, len(names))
	for _, name := range names {
		targets = append(targets, types.NamespacedName{Namespace: ns, Name: name})
	}
	if ro.failed {
		listNamespace := ns
		if ro.allNamespaces {
			listNamespace = ""
		}
		// creationTimestamp has second precision: compare whole seconds, so that an event created
		// within --since is never left out because its timestamp was truncated.
		cutoff := time.Now().Add(-ro.since).Truncate(time.Second)
		events, err := listEvents(ctx, c, listNamespace,
			fields.OneTermEqualSelector("status.phase", string(webhooksv1alpha1.DocumentEventFailed)),
			func(ev *webhooksv1alpha1.DocumentEvent) bool {
				if ev.Status.Phase != webhooksv1alpha1.DocumentEventFailed {
					return false
				}
				return ro.since == 0 || !ev.CreationTimestamp.Time.Before(cutoff)
			})
		if err != nil {
			return fmt.Errorf("list failed DocumentEvents: %w", err)
		}
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
			_, _ = fmt.Fprintf(o.streams.ErrOut, "No Failed DocumentEvents found %s.\n", where)
		}
	}

	requestedAt := time.Now().UTC().Format(time.RFC3339Nano)
	values := map[string]*string{
		webhooksv1alpha1.RedeliverRequestedAtAnnotation: &requestedAt,
		webhooksv1alpha1.RedeliverScopeAnnotation:       nil, // absent means all deliveries
	}
	if ro.scope != "" {
		values[webhooksv1alpha1.RedeliverScopeAnnotation] = &ro.scope
	}
	patch, err := annotationsPatch(values)
	if err != nil {
		return err
	}

	out, errOut := o.streams.Out, o.streams.ErrOut
	redelivered, failures := 0, 0
	for _, target := range targets {
		ev := &webhooksv1alpha1.DocumentEvent{}
		ev.Name, ev.Namespace = target.Name, target.Namespace
		where := ""
		if ro.allNamespaces {
			where = " in namespace " + target.Namespace
		}
		if err := c.Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch)); err != nil {
			failures++
			if apierrors.IsNotFound(err) {
				err = fmt.Errorf("not found in namespace %q", target.Namespace)
			}
			_, _ = fmt.Fprintf(errOut, "error: documentevent/%s%s: %v\n", target.Name, where, err)
			continue
		}
		redelivered++
		if _, err := fmt.Fprintf(out, "documentevent/%s%s: redelivery requested\n", target.Name, where); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(out, "%d %s redelivered\n", redelivered, plural(redelivered, "DocumentEvent")); err != nil {
		return err
	}
	if failures > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d of %d %s could not be redelivered",
			failures, len(targets), plural(len(targets), "DocumentEvent"))}
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
