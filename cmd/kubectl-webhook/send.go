package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/payload"
)

// maxEventBytes is the largest DocumentEvent, as JSON, that send creates. etcd refuses to store an object
// over 1.5 MiB (its --max-request-bytes default, 1572864 bytes; the API server then answers "etcdserver:
// request is too large"), and that limit covers the whole object: its metadata and managedFields, and the
// status the operator writes later, which reaches about 400 KB with 256 deliveries. 1 MiB leaves that
// room; send_test.go writes such a status to an event of this size.
const maxEventBytes = 1 << 20

// dryRunTimeout bounds the server-side dry run, so that --dry-run against an unreachable cluster falls
// back to the local check in seconds rather than after the dial timeout.
const dryRunTimeout = 10 * time.Second

// sendOptions are the flags of send.
type sendOptions struct {
	*options
	filename string
	name     string
	selector string
	dryRun   bool
}

func newSendCommand(o *options) *cobra.Command {
	so := &sendOptions{options: o}
	cmd := &cobra.Command{
		Use:   "send -f PAYLOAD.json [--name NAME] [--selector k=v,...] [--dry-run]",
		Short: "Create a DocumentEvent from a webhook payload",
		Long: `Create a DocumentEvent from a webhook payload: the JSON body receivers get
({"event", "success", "documentId", "status", "document", "extraction"}). The operator then delivers it
to the matching endpoints, so the receivers get the same payload again (with new timestamps and
signatures, and a new X-Webhook-Id).

totalAmount keeps every digit; extractionErrors, fields and tables are kept as raw JSON. The event is
named after the documentId (lowercased, other characters replaced by '-') plus a random suffix, unless
--name is given. --selector limits the event to the endpoints whose labels match. -f - reads the payload
from standard input.

--dry-run prints the DocumentEvent as YAML instead of creating it, after the API server validated it with
a server-side dry run (the CRD's schema and rules: date formats, lengths, ...), and says on standard error
which validation ran. When no API server can be reached, only the local checks run, and it says so.

send refuses an event over 1 MiB of JSON: etcd refuses objects over 1.5 MiB, and the event needs room for
its metadata and for the status the operator writes.`,
		Example: `  # Send a captured payload to every endpoint of the namespace
  kubectl webhook send -f payload.json -n acme

  # Only to the endpoints labelled team=billing, with a chosen name
  kubectl webhook send -f payload.json --name invoice-1042-replay --selector team=billing -n acme

  # Review the DocumentEvent first
  kubectl webhook send -f payload.json --dry-run`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, "send takes no arguments; give the payload with -f")
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              runOptions(so),
	}
	cmd.Flags().StringVarP(&so.filename, "filename", "f", "", "Webhook payload JSON file, or - for standard input")
	cmd.Flags().StringVar(&so.name, "name", "", "Name of the DocumentEvent (default: the documentId, sanitized, plus a random suffix)")
	cmd.Flags().StringVarP(&so.selector, "selector", "l", "", "Label selector of the target WebhookEndpoints (for example 'team=billing,tier in (prod,staging)')")
	cmd.Flags().BoolVar(&so.dryRun, "dry-run", false, "Print the DocumentEvent as YAML instead of creating it, validated by the API server when it is reachable")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// Complete has nothing to add: send takes no arguments, and -n is read when the event is built.
func (so *sendOptions) Complete(*cobra.Command, []string) error { return nil }

// Validate has nothing to check before the payload is read: required flags are cobra's to check, and the
// --name and --selector errors come after those of the payload, as they always did.
func (so *sendOptions) Validate() error { return nil }

// Run builds the event from the payload and creates it, or with --dry-run prints it.
func (so *sendOptions) Run(ctx context.Context) error {
	o := so.options
	ev, err := so.buildEvent()
	if err != nil {
		return err
	}
	if so.dryRun {
		return so.dryRunSend(ctx, ev)
	}

	if ev.Namespace == "" {
		ns, _, err := o.namespace()
		if err != nil {
			return err
		}
		ev.Namespace = ns
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	if err := c.Create(ctx, ev); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("documentevent %q already exists in namespace %q; choose another --name", ev.Name, ev.Namespace)
		}
		return fmt.Errorf("create documentevent %q: %w", ev.Name, err)
	}
	_, err = fmt.Fprintf(o.streams.Out, "documentevent/%s created in namespace %s (documentId %s)\n", ev.Name, ev.Namespace, ev.Spec.DocumentID)
	return err
}

// buildEvent reads the payload and returns the DocumentEvent; its namespace is set only when -n was given.
func (so *sendOptions) buildEvent() (*webhooksv1alpha1.DocumentEvent, error) {
	in := so.streams.In
	source := "standard input"
	if so.filename != "-" {
		f, err := os.Open(so.filename)
		if err != nil {
			return nil, fmt.Errorf("read the payload: %w", err)
		}
		defer func() { _ = f.Close() }()
		in, source = f, so.filename
	}
	spec, err := payload.Parse(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if so.selector != "" {
		sel, err := metav1.ParseToLabelSelector(so.selector)
		if err != nil {
			return nil, fmt.Errorf("invalid --selector %q: %w", so.selector, err)
		}
		spec.EndpointSelector = sel
	}

	name := so.name
	if name == "" {
		name = payload.Name(spec.DocumentID)
	} else if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("invalid --name %q: %s", name, strings.Join(errs, "; "))
	}
	ev := &webhooksv1alpha1.DocumentEvent{
		TypeMeta: metav1.TypeMeta{APIVersion: webhooksv1alpha1.GroupVersion.String(), Kind: "DocumentEvent"},
		Spec:     *spec,
	}
	ev.Name = name
	ev.Namespace = *so.configFlags.Namespace
	if err := checkEventSize(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// checkEventSize refuses an event over maxEventBytes. A server-side dry run does not catch such an event:
// it never reaches etcd, which is where the limit is.
func checkEventSize(ev *webhooksv1alpha1.DocumentEvent) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if len(raw) <= maxEventBytes {
		return nil
	}
	return fmt.Errorf("the DocumentEvent would be %d bytes of JSON, over send's limit of %d bytes (1 MiB): etcd refuses "+
		"to store objects over 1.5 MiB (its --max-request-bytes default), and the event needs room for its metadata and "+
		"for the status the operator writes. Keep large data out of the event: store it elsewhere and put a reference "+
		"to it (a URL or an id) in extraction.fields", len(raw), maxEventBytes)
}

// dryRunSend prints the event as a manifest once the API server validated it with a server-side dry run:
// the local parser knows the payload's shape, but only the API server runs the CRD's schema and rules. The
// verdict goes to the error stream, so that the manifest can be redirected to a file.
func (so *sendOptions) dryRunSend(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent) error {
	o := so.options
	verdict, err := validateOnServer(ctx, o, ev)
	if err != nil {
		return err
	}
	if err := printEventYAML(o.streams.Out, ev); err != nil {
		return err
	}
	_, err = fmt.Fprintln(o.streams.ErrOut, verdict)
	return err
}

// validateOnServer creates the event with dryRun=All and returns which validation ran. An answer from the
// API server is the verdict, as it would be for the real send; when the server cannot be asked (no
// kubeconfig, unreachable, no DocumentEvent CRD), the local checks are all that ran.
func validateOnServer(ctx context.Context, o *options, ev *webhooksv1alpha1.DocumentEvent) (string, error) {
	localOnly := func(why error) string {
		return fmt.Sprintf("validated locally only: the API server could not be asked (%v). The CRD's schema and "+
			"rules (date formats, lengths, ...) did not run; check the manifest where the cluster is reachable with "+
			"kubectl create --dry-run=server -f FILE", why)
	}
	probe := ev.DeepCopy() // Create fills in the server's answer; the manifest printed is the event as built
	if probe.Namespace == "" {
		ns, _, err := o.namespace()
		if err != nil {
			return localOnly(err), nil
		}
		probe.Namespace = ns
	}
	c, err := o.client()
	if err != nil {
		return localOnly(err), nil
	}
	ctx, cancel := context.WithTimeout(ctx, dryRunTimeout)
	defer cancel()
	err = c.Create(ctx, probe, client.DryRunAll)
	var answer apierrors.APIStatus
	switch {
	case err == nil:
		return fmt.Sprintf("validated by the API server (server-side dry run in namespace %s); nothing was created", probe.Namespace), nil
	case errors.As(err, &answer):
		return "", fmt.Errorf("the API server rejects documentevent %q (server-side dry run in namespace %s; nothing was created): %w",
			probe.Name, probe.Namespace, err)
	default:
		return localOnly(err), nil
	}
}

// printEventYAML writes the event as a manifest for kubectl apply: no status, no creationTimestamp.
func printEventYAML(w io.Writer, ev *webhooksv1alpha1.DocumentEvent) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var manifest map[string]any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&manifest); err != nil {
		return err
	}
	delete(manifest, "status")
	if meta, ok := manifest["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	out, err := yaml.Marshal(manifest)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}
