package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// pollInterval is how often --wait reads the object again.
const pollInterval = 250 * time.Millisecond

// testOptions are the endpoint and the flags of test.
type testOptions struct {
	*options
	cmd           *cobra.Command
	name          string
	waitForResult bool
	timeout       time.Duration
}

func newTestCommand(o *options) *cobra.Command {
	to := &testOptions{options: o}
	cmd := &cobra.Command{
		Use:   "test ENDPOINT",
		Short: "Send a test webhook to a WebhookEndpoint",
		Long: `Request a test webhook for a WebhookEndpoint.

The operator sends one sample document.ready payload (documentId test_..., header X-Webhook-Test: true),
signed like any delivery, and records the outcome in the endpoint's status.lastTest. The request is the
annotation ` + webhooksv1alpha1.TestRequestedAtAnnotation + `=<now>, so each run sends a new test.

With --wait the command waits for the result, prints it, and exits with code 1 when the test failed or
no result arrived within --timeout.`,
		Example: `  # Request a test webhook
  kubectl webhook test orders-receiver -n acme

  # Wait for the result; exit code 1 when the receiver did not answer with a 2xx status
  kubectl webhook test orders-receiver -n acme --wait --timeout 1m`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(cmd, "test takes exactly one WebhookEndpoint name, got %d", len(args))
			}
			return nil
		},
		ValidArgsFunction: completeNames(o, endpointListKind, 1),
		RunE:              runOptions(to),
	}
	cmd.Flags().BoolVar(&to.waitForResult, "wait", false, "Wait for the operator to record the result in status.lastTest and print it")
	cmd.Flags().DurationVar(&to.timeout, "timeout", 30*time.Second, "How long --wait waits for the result")
	return cmd
}

// Complete takes the endpoint name; Args made sure there is exactly one.
func (to *testOptions) Complete(cmd *cobra.Command, args []string) error {
	to.cmd = cmd
	to.name = args[0]
	return nil
}

// Validate checks --timeout.
func (to *testOptions) Validate() error {
	if to.timeout <= 0 {
		return usageError(to.cmd, "--timeout must be positive")
	}
	return nil
}

// Run requests the test and, with --wait, waits for its result and prints it.
func (to *testOptions) Run(ctx context.Context) error {
	o, name, waitForResult, timeout := to.options, to.name, to.waitForResult, to.timeout
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}

	requestedAt := webhookops.RequestTime()
	patch, err := webhookops.TestRequestPatch(requestedAt)
	if err != nil {
		return err
	}
	endpoint := &webhooksv1alpha1.WebhookEndpoint{}
	endpoint.Name, endpoint.Namespace = name, ns
	if err := c.Patch(ctx, endpoint, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("webhookendpoint %q not found in namespace %q", name, ns)
		}
		return fmt.Errorf("request test of webhookendpoint %q: %w", name, err)
	}
	out := o.streams.Out
	if !waitForResult {
		_, err := fmt.Fprintf(out, "test webhook requested for webhookendpoint/%s (%s=%s)\n",
			name, webhooksv1alpha1.TestRequestedAtAnnotation, requestedAt)
		return err
	}

	var result *webhooksv1alpha1.TestResult
	err = wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, endpoint); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
				return false, err
			}
			return false, nil // transient; try again
		}
		if last := endpoint.Status.LastTest; last != nil && last.RequestedAt == requestedAt {
			result = last
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		if wait.Interrupted(err) && ctx.Err() == nil {
			return &exitError{code: 1, msg: fmt.Sprintf(
				"no test result for webhookendpoint/%s after %s (status.lastTest.requestedAt is not %s yet); is the webhook-operator running?",
				name, timeout, requestedAt)}
		}
		return fmt.Errorf("wait for the test result of webhookendpoint %q: %w", name, err)
	}
	if err := printTestResult(out, name, result); err != nil {
		return err
	}
	if !result.Success {
		return silentFailure
	}
	return nil
}

func printTestResult(w io.Writer, name string, r *webhooksv1alpha1.TestResult) error {
	verdict := "succeeded"
	if !r.Success {
		verdict = "FAILED"
	}
	code := "none (no response)"
	if r.StatusCode != 0 {
		code = fmt.Sprint(r.StatusCode)
	}
	lines := fmt.Sprintf("webhookendpoint/%s: test webhook %s\n  status code: %s\n  duration:    %s\n  success:     %t\n",
		name, verdict, code, webhookops.RecordedDuration(r.Duration), r.Success)
	if r.Error != "" {
		// The receiver's words: never raw to the terminal, whatever wrote the status.
		lines += "  error:       " + delivery.Printable(r.Error) + "\n"
	}
	_, err := io.WriteString(w, lines)
	return err
}
