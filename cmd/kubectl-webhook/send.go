package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/payload"
)

type sendOptions struct {
	filename string
	name     string
	selector string
	dryRun   bool
}

func newSendCommand(o *options) *cobra.Command {
	so := &sendOptions{}
	cmd := &cobra.Command{
		Use:   "send -f PAYLOAD.json [--name NAME] [--selector k=v,...] [--dry-run]",
		Short: "Create a DocumentEvent from a webhook payload",
		Long: `Create a DocumentEvent from a webhook payload: the JSON body receivers get
({"event", "success", "documentId", "status", "document", "extraction"}). The operator then delivers it
to the matching endpoints, so the receivers get the same payload again (with new timestamps and
signatures, and a new X-Webhook-Id).

totalAmount keeps every digit; extractionErrors, fields and tables are kept as raw JSON. The event is
named after the documentId (lowercased, other characters replaced by '-') plus a random suffix, unless
--name is given. --selector limits the event to the endpoints whose labels match. --dry-run prints the
DocumentEvent as YAML instead of creating it. -f - reads the payload from standard input.`,
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSend(cmd.Context(), o, so)
		},
	}
	cmd.Flags().StringVarP(&so.filename, "filename", "f", "", "Webhook payload JSON file, or - for standard input")
	cmd.Flags().StringVar(&so.name, "name", "", "Name of the DocumentEvent (default: the documentId, sanitized, plus a random suffix)")
	cmd.Flags().StringVarP(&so.selector, "selector", "l", "", "Label selector of the target WebhookEndpoints (for example 'team=billing,tier in (prod,staging)')")
	cmd.Flags().BoolVar(&so.dryRun, "dry-run", false, "Print the DocumentEvent as YAML instead of creating it")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func runSend(ctx context.Context, o *options, so *sendOptions) error {
	ev, err := buildEvent(o, so)
	if err != nil {
		return err
	}
	if so.dryRun {
		return printEventYAML(o.streams.Out, ev)
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
func buildEvent(o *options, so *sendOptions) (*webhooksv1alpha1.DocumentEvent, error) {
	in := o.streams.In
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
	ev.Namespace = *o.configFlags.Namespace
	return ev, nil
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
