package controller

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// readinessInput is what the readiness policies look at: the endpoint and the Secrets it references,
// as read at one moment. Gathering it is the only part that talks to the API server.
type readinessInput struct {
	ep           *webhooksv1alpha1.WebhookEndpoint
	requireHTTPS bool
	// egress is the policy for the endpoint's namespace: allowPrivate tells that its Namespace is
	// labelled for private egress, and egress then allows the private ranges.
	egress       *delivery.EgressPolicy
	allowPrivate bool
	// signing, ca and clientCert are the referenced Secrets; nil when the endpoint references none or
	// the Secret does not exist.
	signing, ca, clientCert *cachedSecret
}

// readinessPolicy is one check of the readiness chain. It returns ok=false with the readiness to report
// when the endpoint cannot take deliveries for its reason. Policies are pure functions of the input.
type readinessPolicy func(in *readinessInput) (engine.Readiness, bool)

// readinessChain is the order in which an endpoint's problems are reported: its spec (URL, suspension),
// the signing Secret, the TLS Secrets, then the egress policy on the URL's IP literal. The engine
// adds its own verdicts after these (a destination refused at dial time, then the circuit). The same
// chain decides the Ready condition and admits every attempt when it starts.
var readinessChain = []readinessPolicy{
	urlValid,
	notSuspended,
	signingSecretUsable,
	tlsSecretsUsable,
	destinationAllowed,
}

var ready = engine.Readiness{Ready: true, Reason: webhooksv1alpha1.ReadyReason, Message: "endpoint accepts deliveries"}

func notReady(reason, format string, args ...any) engine.Readiness {
	return engine.Readiness{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// evaluate runs the chain and returns the first problem, or ready.
func (in *readinessInput) evaluate() engine.Readiness {
	for _, policy := range readinessChain {
		if rd, ok := policy(in); !ok {
			return rd
		}
	}
	return ready
}

func urlValid(in *readinessInput) (engine.Readiness, bool) {
	if err := delivery.ValidateURL(in.ep.Spec.URL, in.requireHTTPS); err != nil {
		if errors.Is(err, delivery.ErrInsecureURL) {
			return notReady(webhooksv1alpha1.InsecureURLReason, "%s", err.Error()), false
		}
		return notReady(webhooksv1alpha1.InvalidURLReason, "spec.url: %s", err.Error()), false
	}
	return ready, true
}

func destinationAllowed(in *readinessInput) (engine.Readiness, bool) {
	u, err := url.Parse(in.ep.Spec.URL)
	if err != nil {
		return ready, true
	}
	if err := in.egress.CheckHost(u.Hostname()); err != nil {
		return notReady(webhooksv1alpha1.DestinationBlockedReason, "%s", err.Error()), false
	}
	return ready, true
}

// notSuspended says how to resume, since the message also answers a test webhook sent while suspended.
func notSuspended(in *readinessInput) (engine.Readiness, bool) {
	if in.ep.Spec.Suspend {
		return notReady(webhooksv1alpha1.SuspendedReason, `endpoint is suspended (spec.suspend: true): deliveries wait; `+
			`resume it with kubectl -n %s patch webhookendpoint %s --type=merge -p '{"spec":{"suspend":false}}'`,
			in.ep.Namespace, in.ep.Name), false
	}
	return ready, true
}

func signingSecretUsable(in *readinessInput) (engine.Readiness, bool) {
	ep := in.ep
	if ep.Spec.SecretRef == nil {
		return ready, true
	}
	name, key := ep.Spec.SecretRef.Name, ep.GetSecretKey()
	if in.signing == nil {
		return notReady(webhooksv1alpha1.SecretNotFoundReason,
			"Secret %q not found in namespace %q; deliveries wait until it exists", name, ep.Namespace), false
	}
	switch value, found := in.signing.data[key]; {
	case !found:
		return notReady(webhooksv1alpha1.SecretKeyMissingReason,
			"Secret %q has no key %q (%s); set spec.secretRef.key or add the key", name, key, describeKeys(in.signing.data)), false
	case len(value) == 0:
		return notReady(webhooksv1alpha1.SecretKeyMissingReason,
			"Secret %q has an empty value at key %q; put the signing secret there", name, key), false
	}
	keys := signingKeys(in)
	// Sign a probe so that a secret the scheme cannot use (a whsec_ value that is not base64) shows on the
	// endpoint instead of failing every attempt.
	if _, err := signature.SignHeaders(signature.Scheme(ep.GetSignatureScheme()), "probe", time.Unix(0, 0), nil, keys...); err != nil {
		return notReady(webhooksv1alpha1.SecretInvalidReason,
			"Secret %q: a key cannot be used by the %s scheme: %v", name, ep.GetSignatureScheme(), err), false
	}
	return ready, true
}

// maxListedSecretKeys bounds the key names a SecretKeyMissing message lists, so a Secret with many keys
// does not flood the condition.
const maxListedSecretKeys = 10

// describeKeys names a Secret's keys, sorted, so that a misspelled spec.secretRef.key is easy to spot.
// Only the names: the values are secret.
func describeKeys(data map[string][]byte) string {
	if len(data) == 0 {
		return "it has no keys"
	}
	names := slices.Sorted(maps.Keys(data))
	if len(names) <= maxListedSecretKeys {
		return "it has: " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("it has: %s and %d more", strings.Join(names[:maxListedSecretKeys], ", "), len(names)-maxListedSecretKeys)
}

// signingSecretNewlineNote warns when the current signing key ends in a newline, as a Secret created
// --from-file from a file written by echo does. The operator signs with the exact bytes, newline
// included, and many receivers trim it, so their signatures differ. It names the key, never the value.
func signingSecretNewlineNote(in *readinessInput) string {
	keys := signingKeys(in)
	if len(keys) == 0 || !bytes.HasSuffix(keys[0], []byte("\n")) {
		return ""
	}
	return fmt.Sprintf("the value of key %q in Secret %q ends with a newline, which is signed as part of the key; "+
		"receivers that trim it compute other signatures (recreate the Secret with --from-literal, or from a file "+
		"written with printf '%%s')", in.ep.GetSecretKey(), in.ep.Spec.SecretRef.Name)
}

// signingKeys returns the current key and, during a rotation, the previous one.
func signingKeys(in *readinessInput) [][]byte {
	if in.signing == nil {
		return nil
	}
	current := in.signing.data[in.ep.GetSecretKey()]
	if len(current) == 0 {
		return nil
	}
	keys := [][]byte{current}
	if previous := in.signing.data[webhooksv1alpha1.PreviousSigningSecretKey]; len(previous) > 0 {
		keys = append(keys, previous)
	}
	return keys
}

func tlsSecretsUsable(in *readinessInput) (engine.Readiness, bool) {
	t := in.ep.Spec.TLS
	if t == nil {
		return ready, true
	}
	if ref := t.CASecretRef; ref != nil {
		if in.ca == nil {
			return notReady(webhooksv1alpha1.TLSSecretNotFoundReason,
				"Secret %q named in spec.tls not found in namespace %q", ref.Name, in.ep.Namespace), false
		}
		if len(in.ca.data[webhooksv1alpha1.CACertKey]) == 0 {
			return notReady(webhooksv1alpha1.TLSSecretInvalidReason, "Secret %q has no key %q", ref.Name, webhooksv1alpha1.CACertKey), false
		}
	}
	if ref := t.ClientCertSecretRef; ref != nil {
		if in.clientCert == nil {
			return notReady(webhooksv1alpha1.TLSSecretNotFoundReason,
				"Secret %q named in spec.tls not found in namespace %q", ref.Name, in.ep.Namespace), false
		}
		if len(in.clientCert.data[corev1.TLSCertKey]) == 0 || len(in.clientCert.data[corev1.TLSPrivateKeyKey]) == 0 {
			return notReady(webhooksv1alpha1.TLSSecretInvalidReason, "Secret %q needs keys %q and %q",
				ref.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey), false
		}
	}
	return ready, true
}

// tlsMaterial returns the endpoint's TLS material, or nil when it has no spec.tls. The connection pool
// is keyed by the endpoint's UID, so a recreated endpoint never inherits the pool of the old one.
func tlsMaterial(in *readinessInput) *delivery.TLSMaterial {
	if in.ep.Spec.TLS == nil {
		return nil
	}
	m := &delivery.TLSMaterial{Owner: string(in.ep.UID)}
	if in.ca != nil {
		m.CAPEM = in.ca.data[webhooksv1alpha1.CACertKey]
		m.Version += "ca:" + in.ca.resourceVersion
	}
	if in.clientCert != nil {
		m.CertPEM, m.KeyPEM = in.clientCert.data[corev1.TLSCertKey], in.clientCert.data[corev1.TLSPrivateKeyKey]
		m.Version += "/cert:" + in.clientCert.resourceVersion
	}
	return m
}

// engineEndpoint is the endpoint as the engine sees it: readiness, the request template and the bounds.
func engineEndpoint(in *readinessInput) engine.Endpoint {
	ep := in.ep
	out := engine.Endpoint{
		Key:        keyOf(ep),
		UID:        ep.UID,
		Generation: ep.Generation,
		Readiness:  in.evaluate(),
		Request: delivery.Request{
			URL:          ep.Spec.URL,
			Timeout:      ep.GetTimeout(),
			Scheme:       signature.Scheme(ep.GetSignatureScheme()),
			AllowPrivate: in.allowPrivate,
		},
		AllowPrivate:        in.allowPrivate,
		MaxInFlight:         ep.GetMaxInFlight(),
		MaxAttempts:         ep.GetMaxAttempts(),
		FailureThreshold:    ep.GetFailureThreshold(),
		Cooldown:            ep.GetCooldown(),
		ConsecutiveFailures: ep.Status.ConsecutiveFailures,
		MaxPause:            ep.GetMaxInterval(),
	}
	if until := ep.Status.RetryAfterUntil; until != nil {
		out.RetryAfterUntil = until.Time
	}
	if perSecond, burst, limited := ep.GetRateLimit(); limited {
		out.RateLimit = engine.RateLimit{PerSecond: perSecond, Burst: burst}
	}
	// A destination refused at dial time is only known from an attempt; the Ready condition keeps it
	// across a restart, unless this process's egress policy allows the address it names (the manager was
	// restarted with other --allowed-cidrs). An IP literal in a blocked range is found by the chain itself.
	if c := apimeta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition); c != nil &&
		c.Reason == webhooksv1alpha1.DestinationBlockedReason && c.ObservedGeneration == ep.Generation &&
		in.egress.StillBlocks(c.Message) {
		out.DestinationBlocked = c.Message
	}
	if !out.Readiness.Ready {
		return out
	}
	if keys := signingKeys(in); len(keys) > 0 {
		out.Request.Secret = keys[0]
		if len(keys) > 1 {
			out.Request.PreviousSecret = keys[1]
		}
	}
	out.Request.TLS = tlsMaterial(in)
	return out
}
