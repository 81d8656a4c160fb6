package controller

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// readiness is whether an endpoint can take an attempt now, and why not.
type readiness struct {
	Ready   bool
	Reason  string
	Message string
}

var ready = readiness{Ready: true, Reason: webhooksv1alpha1.ReadyReason, Message: "endpoint accepts deliveries"}

func notReady(reason, format string, args ...any) readiness {
	return readiness{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// credentials is what an attempt needs from the endpoint's Secrets.
type credentials struct {
	// signing holds the current key and, during a rotation, the previous one; empty means unsigned.
	signing [][]byte
	tls     *delivery.TLSMaterial
}

// endpointResolver decides readiness and resolves an endpoint's Secrets.
//
// Secret values are read with an uncached reader and kept only for Secrets that an endpoint references,
// keyed by resourceVersion. A metadata-only informer tells when a Secret changed, so the operator never
// holds every Secret of the cluster in memory, and a rotated secret or certificate is used on the next
// attempt. Every lookup uses the endpoint's own namespace: references never cross tenants.
type endpointResolver struct {
	// metadata reads Secret metadata from the manager's cache (a metadata-only informer).
	metadata client.Reader
	// live reads Secret values straight from the API server.
	live         client.Reader
	requireHTTPS bool
	egress       *delivery.EgressPolicy

	mu      sync.Mutex
	secrets map[types.NamespacedName]cachedSecret
}

type cachedSecret struct {
	resourceVersion string
	data            map[string][]byte
}

// checkSpec is the part of readiness that needs no API call.
func (r *endpointResolver) checkSpec(ep *webhooksv1alpha1.WebhookEndpoint) readiness {
	if err := delivery.ValidateURL(ep.Spec.URL, r.requireHTTPS); err != nil {
		if errors.Is(err, delivery.ErrInsecureURL) {
			return notReady(webhooksv1alpha1.InsecureURLReason, "%s", err.Error())
		}
		return notReady(webhooksv1alpha1.InvalidURLReason, "spec.url: %s", err.Error())
	}
	if u, err := url.Parse(ep.Spec.URL); err == nil {
		if err := r.egress.CheckHost(u.Hostname()); err != nil {
			return notReady(webhooksv1alpha1.DestinationBlockedReason, "%s", err.Error())
		}
	}
	if ep.Spec.Suspend {
		return notReady(webhooksv1alpha1.SuspendedReason, "deliveries wait while spec.suspend is true")
	}
	return ready
}

// resolve returns the endpoint's credentials and readiness. An error is returned only for transient
// API failures, which the caller retries.
func (r *endpointResolver) resolve(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint) (credentials, readiness, error) {
	var creds credentials
	if rd := r.checkSpec(ep); !rd.Ready {
		return creds, rd, nil
	}
	if ep.Spec.SecretRef != nil {
		rd, err := r.resolveSigning(ctx, ep, &creds)
		if err != nil || !rd.Ready {
			return creds, rd, err
		}
	}
	if ep.Spec.TLS != nil {
		rd, err := r.resolveTLS(ctx, ep, &creds)
		if err != nil || !rd.Ready {
			return creds, rd, err
		}
	}
	return creds, ready, nil
}

func (r *endpointResolver) resolveSigning(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint, creds *credentials) (readiness, error) {
	name := ep.Spec.SecretRef.Name
	secret, err := r.secret(ctx, types.NamespacedName{Namespace: ep.Namespace, Name: name})
	if apierrors.IsNotFound(err) {
		return notReady(webhooksv1alpha1.SecretNotFoundReason,
			"Secret %q not found in namespace %q; deliveries wait until it exists", name, ep.Namespace), nil
	}
	if err != nil {
		return readiness{}, err
	}
	key := ep.GetSecretKey()
	current := secret.data[key]
	if len(current) == 0 {
		return notReady(webhooksv1alpha1.SecretKeyMissingReason,
			"Secret %q has no non-empty key %q; deliveries wait until it does", name, key), nil
	}
	creds.signing = [][]byte{current}
	if previous := secret.data[webhooksv1alpha1.PreviousSigningSecretKey]; len(previous) > 0 {
		creds.signing = append(creds.signing, previous)
	}
	// Sign a probe so that a secret the scheme cannot use (a whsec_ value that is not base64) shows on the
	// endpoint instead of failing every attempt.
	if _, err := signature.SignHeaders(signature.Scheme(ep.GetSignatureScheme()), "probe", time.Unix(0, 0), nil, creds.signing...); err != nil {
		return notReady(webhooksv1alpha1.SecretInvalidReason,
			"Secret %q: a key cannot be used by the %s scheme: %v", name, ep.GetSignatureScheme(), err), nil
	}
	return ready, nil
}

func (r *endpointResolver) resolveTLS(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint, creds *credentials) (readiness, error) {
	material := &delivery.TLSMaterial{Owner: ep.Namespace + "/" + ep.Name}
	if ref := ep.Spec.TLS.CASecretRef; ref != nil {
		secret, rd, err := r.tlsSecret(ctx, ep.Namespace, ref.Name)
		if err != nil || !rd.Ready {
			return rd, err
		}
		if material.CAPEM = secret.data[webhooksv1alpha1.CACertKey]; len(material.CAPEM) == 0 {
			return notReady(webhooksv1alpha1.TLSSecretInvalidReason, "Secret %q has no key %q", ref.Name, webhooksv1alpha1.CACertKey), nil
		}
		material.Version += "ca:" + secret.resourceVersion
	}
	if ref := ep.Spec.TLS.ClientCertSecretRef; ref != nil {
		secret, rd, err := r.tlsSecret(ctx, ep.Namespace, ref.Name)
		if err != nil || !rd.Ready {
			return rd, err
		}
		material.CertPEM, material.KeyPEM = secret.data[corev1.TLSCertKey], secret.data[corev1.TLSPrivateKeyKey]
		if len(material.CertPEM) == 0 || len(material.KeyPEM) == 0 {
			return notReady(webhooksv1alpha1.TLSSecretInvalidReason, "Secret %q needs keys %q and %q",
				ref.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey), nil
		}
		material.Version += "/cert:" + secret.resourceVersion
	}
	creds.tls = material
	return ready, nil
}

func (r *endpointResolver) tlsSecret(ctx context.Context, namespace, name string) (cachedSecret, readiness, error) {
	secret, err := r.secret(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if apierrors.IsNotFound(err) {
		return secret, notReady(webhooksv1alpha1.TLSSecretNotFoundReason,
			"Secret %q named in spec.tls not found in namespace %q", name, namespace), nil
	}
	return secret, ready, err
}

func (r *endpointResolver) secret(ctx context.Context, key types.NamespacedName) (cachedSecret, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.metadata.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
		}
		return cachedSecret{}, err
	}

	r.mu.Lock()
	cached, ok := r.secrets[key]
	r.mu.Unlock()
	if ok && cached.resourceVersion == meta.ResourceVersion {
		return cached, nil
	}

	secret := &corev1.Secret{}
	if err := r.live.Get(ctx, key, secret); err != nil {
		return cachedSecret{}, err
	}
	cached = cachedSecret{resourceVersion: secret.ResourceVersion, data: secret.Data}
	r.mu.Lock()
	r.secrets[key] = cached
	r.mu.Unlock()
	return cached, nil
}

func (r *endpointResolver) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.secrets, key)
	r.mu.Unlock()
}
