package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// verifyOptions are the flags of verify, and the signature schemes they name.
type verifyOptions struct {
	*options
	secretFile  string
	trimNewline bool
	scheme      string
	timestamp   string
	signature   string
	id          string
	tolerance   time.Duration
	noTolerance bool

	// chosen is the scheme of --scheme and other the other one; knownScheme is false when --scheme names
	// neither.
	chosen, other schemeTraits
	knownScheme   bool
}

// writeSecretFile is the command the help and the errors give to write the signing secret to a file. The
// umask in its subshell makes the file readable by its owner alone: under the usual umask (022) a plain
// redirection would let every user of the machine read the secret.
const writeSecretFile = `(umask 077; kubectl get secret NAME -o jsonpath='{.data.signingSecret}' | base64 -d > secret.txt)`

func newVerifyCommand(o *options) *cobra.Command {
	vo := &verifyOptions{options: o}
	cmd := &cobra.Command{
		Use:   "verify --secret-file FILE [--trim-newline] --timestamp T --signature S [--scheme 1flow|standard-webhooks] [--id ID] < body",
		Short: "Verify a webhook signature offline",
		Long: `Verify the signature of a webhook request offline, as a receiver would. The raw body is read from
standard input; it must be the exact bytes received.

Schemes:
  1flow              --timestamp is X-Webhook-Timestamp (Unix milliseconds),
                     --signature is X-Webhook-Signature (lowercase hex)
  standard-webhooks  --id is webhook-id, --timestamp is webhook-timestamp (Unix seconds),
                     --signature is webhook-signature ("v1,<base64>", several separated by spaces)

The secret file holds the signing secret exactly as stored in the Secret (for standard-webhooks usually
whsec_...): the operator signs with the Secret's bytes as they are, a trailing newline included, and so
does verify. This writes them, readable by you alone:

  ` + writeSecretFile + `

--trim-newline drops one trailing newline, for a file written with echo from a Secret without one. The
secret is never printed.

Prints "signature valid" and exits 0, or "signature INVALID: <reason>" and exits 1. Indented lines after it
point at a likely cause: whitespace at the end of the secret file (also after a valid signature, since
receivers that trim their secret reject it), a timestamp in the other scheme's unit, or a request of the
other scheme. Timestamps more than --tolerance from this machine's clock are rejected as possible replays;
--no-tolerance turns the check off (for example to check a captured request later).`,
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
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              runOptions(vo),
	}
	f := cmd.Flags()
	f.StringVar(&vo.secretFile, "secret-file", "", "File holding the signing secret, byte for byte as in the Secret")
	f.BoolVar(&vo.trimNewline, "trim-newline", false, `Drop one trailing newline ("\n" or "\r\n") from the secret file`)
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

// Complete looks up the scheme of --scheme.
func (vo *verifyOptions) Complete(*cobra.Command, []string) error {
	vo.chosen, vo.other, vo.knownScheme = schemeAndOther(signature.Scheme(vo.scheme))
	return nil
}

// Validate checks the scheme and the flags it needs, and the tolerance.
func (vo *verifyOptions) Validate() error {
	if !vo.knownScheme {
		return fmt.Errorf("unknown --scheme %q: use %q or %q", vo.scheme, signature.SchemeOneFlow, signature.SchemeStandardWebhooks)
	}
	if vo.chosen.name == signature.SchemeStandardWebhooks && vo.id == "" {
		return errors.New("--id (the webhook-id header) is required for the standard-webhooks scheme")
	}
	if !vo.noTolerance && vo.tolerance <= 0 {
		return errors.New("--tolerance must be positive; use --no-tolerance to skip the timestamp check")
	}
	return nil
}

// Run reads the secret and the body, verifies the signature and prints the verdict with its hints.
func (vo *verifyOptions) Run(context.Context) error {
	chosen, other := vo.chosen, vo.other
	file, err := os.ReadFile(vo.secretFile)
	if err != nil {
		return fmt.Errorf("read --secret-file: %w", err)
	}
	secret := file
	if vo.trimNewline {
		secret = trimNewline(file)
	}
	if len(secret) == 0 {
		return fmt.Errorf("--secret-file %s is empty: write the Secret's value into it (%s)", vo.secretFile, writeSecretFile)
	}
	body, err := io.ReadAll(vo.streams.In)
	if err != nil {
		return fmt.Errorf("read the body from standard input: %w", err)
	}

	tolerance := vo.tolerance
	if vo.noTolerance {
		tolerance = 0 // zero disables the replay check
	}
	check := func(secret []byte) error { return verifyRequest(chosen.name, vo, secret, body, tolerance) }
	err = check(secret)
	now := time.Now()
	verdict := "signature valid"
	var hints []string
	if err != nil {
		verdict = "signature INVALID: " + failureReason(err, chosen, vo.timestamp, tolerance, now)
		hints = requestHints(chosen, other, vo, now)
	}
	if hint := secretWhitespaceHint(file, secret, err, check); hint != "" {
		hints = append(hints, hint)
	}
	// Neither the hints nor the package's errors include the secret or the expected signature.
	if _, printErr := fmt.Fprintln(vo.streams.Out, strings.Join(append([]string{verdict}, hints...), "\n  ")); printErr != nil {
		return printErr
	}
	if err != nil {
		return silentFailure
	}
	return nil
}

// verifyRequest checks the request given by the flags and the body with one secret.
func verifyRequest(scheme signature.Scheme, vo *verifyOptions, secret, body []byte, tolerance time.Duration) error {
	opts := []signature.Option{signature.WithTolerance(tolerance)}
	if scheme == signature.SchemeOneFlow {
		return signature.VerifyValues(secret, vo.timestamp, vo.signature, body, opts...)
	}
	header := http.Header{}
	header.Set(signature.StandardHeaderID, vo.id)
	header.Set(signature.StandardHeaderTimestamp, vo.timestamp)
	header.Set(signature.StandardHeaderSignature, vo.signature)
	return signature.VerifyStandard(secret, header, body, opts...)
}

// trimNewline drops one trailing newline, "\n" or "\r\n", as echo or an editor adds to a file.
func trimNewline(secret []byte) []byte {
	if trimmed, ok := bytes.CutSuffix(secret, []byte("\n")); ok {
		secret, _ = bytes.CutSuffix(trimmed, []byte("\r"))
	}
	return secret
}

// schemeTraits is what the hints need to know about a signature scheme to recognize its requests.
type schemeTraits struct {
	name            signature.Scheme
	timestampHeader string
	timestampUnit   string // "milliseconds" or "seconds"
	unitsPerSecond  int64
	signatureForm   string
	hasForm         func(signatureValue string) bool
}

var schemeTraitsList = [2]schemeTraits{{
	name:            signature.SchemeOneFlow,
	timestampHeader: signature.HeaderTimestamp,
	timestampUnit:   "milliseconds",
	unitsPerSecond:  1000,
	signatureForm:   "of 64 hex digits",
	hasForm: func(value string) bool {
		_, err := hex.DecodeString(value)
		return len(value) == 64 && err == nil
	},
}, {
	name:            signature.SchemeStandardWebhooks,
	timestampHeader: signature.StandardHeaderTimestamp,
	timestampUnit:   "seconds",
	unitsPerSecond:  1,
	signatureForm:   `"v1,<base64>"`,
	hasForm:         func(value string) bool { return strings.HasPrefix(value, "v1,") },
}}

// schemeAndOther returns the traits of the named scheme and of the other one; ok is false for an unknown
// name.
func schemeAndOther(name signature.Scheme) (named, other schemeTraits, ok bool) {
	for i, traits := range schemeTraitsList {
		if traits.name == name {
			return traits, schemeTraitsList[1-i], true
		}
	}
	return schemeTraits{}, schemeTraits{}, false
}

// plausibleAge bounds how far from now a timestamp read in a given unit may be for the hints to take that
// unit for the intended one: requests are checked within days of being captured, and the two units are a
// thousandfold apart, so at most one reading falls this close to now.
const plausibleAge = 365 * 24 * time.Hour

// offsetFromNow returns how far the timestamp value, read in the scheme's unit, is from now, in whole
// seconds (negative in the past), or false if the value is not a non-negative decimal number.
func offsetFromNow(value string, traits schemeTraits, now time.Time) (int64, bool) {
	units, err := strconv.ParseInt(value, 10, 64)
	if err != nil || units < 0 {
		return 0, false
	}
	return units/traits.unitsPerSecond - now.Unix(), true
}

// failureReason says why verification failed. A timestamp outside the tolerance is described in kubectl's
// units ("55y ago") rather than as the hours of the package's error.
func failureReason(err error, traits schemeTraits, timestamp string, tolerance time.Duration, now time.Time) string {
	if offset, ok := offsetFromNow(timestamp, traits, now); ok && errors.Is(err, signature.ErrTimestampExpired) {
		return fmt.Sprintf("timestamp is outside the tolerance: %s (tolerance %s)", describeOffset(offset), tolerance)
	}
	return strings.TrimPrefix(err.Error(), "signature: ")
}

// describeOffset describes an offset in seconds from now, for example "55y ago" or "3h in the future".
func describeOffset(offset int64) string {
	direction := "in the future"
	if offset < 0 {
		offset, direction = -offset, "ago"
	}
	const longestSeconds = math.MaxInt64 / int64(time.Second) // a time.Duration holds no more
	if offset > longestSeconds {
		return fmt.Sprintf("more than %s %s", duration.HumanDuration(time.Duration(longestSeconds)*time.Second), direction)
	}
	return duration.HumanDuration(time.Duration(offset)*time.Second) + " " + direction
}

// requestHints points at a request of the other scheme, or at a timestamp in the other scheme's unit.
func requestHints(chosen, other schemeTraits, vo *verifyOptions, now time.Time) []string {
	offset, ok := offsetFromNow(vo.timestamp, other, now)
	timestampInOtherUnit := ok && max(offset, -offset) <= int64(plausibleAge/time.Second)
	signatureOfOther := other.hasForm(vo.signature)
	// --id counts only along with a timestamp in seconds: 1flow requests carry an X-Webhook-Id too, which
	// users may pass.
	idOfStandard := other.name == signature.SchemeStandardWebhooks && vo.id != ""

	var signs []string
	if signatureOfOther {
		signs = append(signs, fmt.Sprintf("the signature has the %s form %s", other.name, other.signatureForm))
	}
	if idOfStandard {
		signs = append(signs, fmt.Sprintf("--id (%s) is given", signature.StandardHeaderID))
	}
	if timestampInOtherUnit {
		signs = append(signs, "the timestamp looks like Unix "+other.timestampUnit)
	}
	switch {
	case signatureOfOther || (idOfStandard && timestampInOtherUnit):
		return []string{fmt.Sprintf("hint: %s: did you mean --scheme %s?", joinAnd(signs), other.name)}
	case timestampInOtherUnit:
		return []string{fmt.Sprintf("hint: the timestamp looks like Unix %s; the %s scheme's %s is in Unix %s",
			other.timestampUnit, chosen.name, chosen.timestampHeader, chosen.timestampUnit)}
	}
	return nil
}

// joinAnd joins phrases as "a, b and c".
func joinAnd(phrases []string) string {
	if len(phrases) < 2 {
		return strings.Join(phrases, "")
	}
	return strings.Join(phrases[:len(phrases)-1], ", ") + " and " + phrases[len(phrases)-1]
}

// secretWhitespaceHint explains trailing whitespace in the secret file, which is part of the key since
// the operator signs with the Secret's bytes exactly. After a failure that depends on the secret it tries
// the file with and without the whitespace and says which one the request was signed with. After a success
// it warns that receivers which trim their secret reject these requests, unless the whitespace makes no
// difference (the base64 of a whsec_ secret ignores newlines).
func secretWhitespaceHint(file, used []byte, verdict error, check func([]byte) error) string {
	const receiverAdvice = "a receiver that trims its secret rejects these requests: give it the Secret's exact bytes, " +
		"or re-create the Secret without the trailing whitespace"
	if verdict == nil {
		usedStripped := bytes.TrimRightFunc(used, unicode.IsSpace)
		if len(usedStripped) == len(used) || check(usedStripped) == nil {
			return ""
		}
		return fmt.Sprintf("note: the secret ends in %s and the signature was made with it (the operator signs with the Secret's bytes exactly); %s",
			describeWhitespace(used[len(usedStripped):]), receiverAdvice)
	}
	if !errors.Is(verdict, signature.ErrMismatch) && !errors.Is(verdict, signature.ErrInvalidSecret) {
		return "" // the timestamp or a missing value failed, whatever the secret
	}
	stripped := bytes.TrimRightFunc(file, unicode.IsSpace)
	if len(stripped) == len(file) {
		return ""
	}
	whitespace := describeWhitespace(file[len(stripped):])
	variants := []struct {
		secret  []byte
		matches string
	}{
		{file, fmt.Sprintf("the signature matches the secret file as it is, ending in %s, so the Secret that signed it ends in it too: "+
			"leave out --trim-newline; %s", whitespace, receiverAdvice)},
		{trimNewline(file), "the signature matches the secret without its last newline, so the Secret that signed it has none: " +
			"run again with --trim-newline"},
		{stripped, "the signature matches the secret without the whitespace at its end, so the Secret that signed it has none: " +
			"remove the whitespace from the secret file"},
	}
	tried := [][]byte{used}
	for _, variant := range variants {
		if slices.ContainsFunc(tried, func(secret []byte) bool { return bytes.Equal(secret, variant.secret) }) {
			continue
		}
		tried = append(tried, variant.secret)
		if check(variant.secret) == nil {
			return "hint: " + variant.matches
		}
	}
	return fmt.Sprintf("hint: the secret ends in %s, but the signature matches neither with it nor without it, so that is not the cause", whitespace)
}

// describeWhitespace names trailing whitespace for the hints: "a newline", or the characters quoted.
func describeWhitespace(whitespace []byte) string {
	if string(whitespace) == "\n" {
		return "a newline"
	}
	return "whitespace " + strconv.Quote(string(whitespace))
}
