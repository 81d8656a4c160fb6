package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/1flow/webhook-operator/pkg/signature"
)

type verifyOptions struct {
	secretFile  string
	scheme      string
	timestamp   string
	signature   string
	id          string
	tolerance   time.Duration
	noTolerance bool
}

func newVerifyCommand(o *options) *cobra.Command {
	vo := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify --secret-file FILE --timestamp T --signature S [--scheme 1flow|standard-webhooks] [--id ID] < body",
		Short: "Verify a webhook signature offline",
		Long: `Verify the signature of a webhook request offline, as a receiver would. The raw body is read from
standard input; it must be the exact bytes received.

Schemes:
  1flow              --timestamp is X-Webhook-Timestamp (Unix milliseconds),
                     --signature is X-Webhook-Signature (lowercase hex)
  standard-webhooks  --id is webhook-id, --timestamp is webhook-timestamp (Unix seconds),
                     --signature is webhook-signature ("v1,<base64>", several separated by spaces)

The secret file holds the signing secret as stored in the Secret (for standard-webhooks usually
whsec_...); one trailing newline is ignored. The secret is never printed.

Prints "signature valid" and exits 0, or "signature INVALID: <reason>" and exits 1. Timestamps more than
--tolerance from this machine's clock are rejected as possible replays; --no-tolerance turns the check off
(for example to check a captured request later).`,
		Example: `  # 1flow scheme
  kubectl webhook verify --secret-file secret.txt \
    --timestamp 1705314600000 --signature 5d41...c0de < body.json

  # standard-webhooks scheme, a request captured yesterday
  kubectl webhook verify --scheme standard-webhooks --secret-file secret.txt \
    --id msg_2b7f --timestamp 1705314600 --signature 'v1,K5oZ...=' --no-tolerance < body.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, "verify takes no arguments; the body is read from standard input")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVerify(o, vo)
		},
	}
	f := cmd.Flags()
	f.StringVar(&vo.secretFile, "secret-file", "", "File holding the signing secret (one trailing newline is ignored)")
	f.StringVar(&vo.scheme, "scheme", string(signature.SchemeOneFlow), `Signature scheme: "1flow" or "standard-webhooks"`)
	f.StringVar(&vo.timestamp, "timestamp", "", "Timestamp header value (1flow: Unix milliseconds; standard-webhooks: Unix seconds)")
	f.StringVar(&vo.signature, "signature", "", "Signature header value")
	f.StringVar(&vo.id, "id", "", "webhook-id header value (standard-webhooks only; required there)")
	f.DurationVar(&vo.tolerance, "tolerance", signature.DefaultTolerance, "Largest accepted distance between the timestamp and this machine's clock")
	f.BoolVar(&vo.noTolerance, "no-tolerance", false, "Do not check the timestamp against the clock")
	_ = cmd.MarkFlagRequired("secret-file")
	_ = cmd.MarkFlagRequired("timestamp")
	_ = cmd.MarkFlagRequired("signature")
	cmd.MarkFlagsMutuallyExclusive("tolerance", "no-tolerance")
	return cmd
}

func runVerify(o *options, vo *verifyOptions) error {
	scheme := signature.Scheme(vo.scheme)
	if scheme != signature.SchemeOneFlow && scheme != signature.SchemeStandardWebhooks {
		return fmt.Errorf("unknown --scheme %q: use %q or %q", vo.scheme, signature.SchemeOneFlow, signature.SchemeStandardWebhooks)
	}
	if scheme == signature.SchemeStandardWebhooks && vo.id == "" {
		return errors.New("--id (the webhook-id header) is required for the standard-webhooks scheme")
	}
	if !vo.noTolerance && vo.tolerance <= 0 {
		return errors.New("--tolerance must be positive; use --no-tolerance to skip the timestamp check")
	}
	secret, err := readSecret(vo.secretFile)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(o.streams.In)
	if err != nil {
		return fmt.Errorf("read the body from standard input: %w", err)
	}

	tolerance := vo.tolerance
	if vo.noTolerance {
		tolerance = 0 // zero disables the replay check
	}
	opts := []signature.Option{signature.WithTolerance(tolerance)}
	if scheme == signature.SchemeOneFlow {
		err = signature.VerifyValues(secret, vo.timestamp, vo.signature, body, opts...)
	} else {
		header := http.Header{}
		header.Set(signature.StandardHeaderID, vo.id)
		header.Set(signature.StandardHeaderTimestamp, vo.timestamp)
		header.Set(signature.StandardHeaderSignature, vo.signature)
		err = signature.VerifyStandard(secret, header, body, opts...)
	}
	if err != nil {
		// The package's errors never include the secret or the expected signature.
		_, _ = fmt.Fprintf(o.streams.Out, "signature INVALID: %s\n", strings.TrimPrefix(err.Error(), "signature: "))
		return silentFailure
	}
	_, err = fmt.Fprintln(o.streams.Out, "signature valid")
	return err
}

// readSecret returns the file's content without one trailing newline ("\n" or "\r\n"). Its errors name
// the file, never the content.
func readSecret(path string) ([]byte, error) {
	secret, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --secret-file: %w", err)
	}
	if trimmed, ok := bytes.CutSuffix(secret, []byte("\n")); ok {
		secret, _ = bytes.CutSuffix(trimmed, []byte("\r"))
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("--secret-file %s is empty", path)
	}
	return secret, nil
}
