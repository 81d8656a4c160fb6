// Command kubectl-webhook is a kubectl plugin (`kubectl webhook ...`) for the webhook-operator: it
// requests test webhooks and redeliveries, summarizes endpoints, verifies signatures offline and sends
// payloads as DocumentEvents.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// scheme knows only the operator's API; the plugin reads and writes nothing else.
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(webhooksv1alpha1.AddToScheme(scheme))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// exitError ends the command with a non-zero exit code. Its message, if any, is printed as "error: ...";
// an empty message means the command already printed why it failed.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// silentFailure ends the command with exit code 1 after it printed its own result.
var silentFailure = &exitError{code: 1}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, streams genericiooptions.IOStreams, args []string) int {
	// controller-runtime warns on stderr when its logger is never set; the plugin logs nothing itself.
	ctrllog.SetLogger(logr.Discard())
	cmd := newRootCommand(streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		if exit.msg != "" {
			_, _ = fmt.Fprintln(streams.ErrOut, "error:", exit.msg)
		}
		return exit.code
	}
	_, _ = fmt.Fprintln(streams.ErrOut, "error:", err)
	return 1
}

// options holds what every subcommand shares: the kubeconfig flags and the streams.
type options struct {
	configFlags *genericclioptions.ConfigFlags
	streams     genericiooptions.IOStreams
}

// newRootCommand builds the command tree; it reads and writes only the given streams.
func newRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{
		configFlags: genericclioptions.NewConfigFlags(true),
		streams:     streams,
	}
	root := &cobra.Command{
		Use:   "kubectl-webhook",
		Short: "Work with webhook-operator WebhookEndpoints and DocumentEvents",
		Long: `kubectl webhook works with the webhook-operator's WebhookEndpoints and DocumentEvents.

It sends test webhooks, requests redeliveries, summarizes the endpoints of a namespace, verifies
webhook signatures offline and creates DocumentEvents from webhook payloads; ui shows all of it in a local
web console.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl webhook",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help' for usage", err, c.CommandPath())
	})
	o.configFlags.AddFlags(root.PersistentFlags())
	// Declared now rather than at execution, so that cobra knows --help takes no value while it looks
	// for the subcommand: `--help --kubeconfig FILE` must not read FILE as a subcommand.
	root.InitDefaultHelpFlag()

	root.AddCommand(
		newTestCommand(o),
		newRedeliverCommand(o),
		newStatusCommand(o),
		newVerifyCommand(o),
		newSendCommand(o),
		newCompletionCommand(o),
		newUICommand(o),
	)
	registerFlagCompletions(root, o)
	return root
}

// namespace returns the namespace of -n or of the kubeconfig context, and whether -n set it.
func (o *options) namespace() (string, bool, error) {
	return o.configFlags.ToRawKubeConfigLoader().Namespace()
}

// client returns a controller-runtime client for the cluster of the kubeconfig flags. API warnings go to
// the error stream.
func (o *options) client() (client.Client, error) {
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kubectl-webhook"
	cfg.WarningHandler = rest.NewWarningWriter(o.streams.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	return client.New(cfg, client.Options{Scheme: scheme})
}

// usageError reports wrong arguments, with the usage hint cobra gives for flag errors.
func usageError(cmd *cobra.Command, format string, args ...any) error {
	return fmt.Errorf("%s\nSee '%s --help' for usage", fmt.Sprintf(format, args...), cmd.CommandPath())
}
