package controller

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// readiness is whether an endpoint can take an attempt now, and why not.
type readiness struct {
	Ready   bool
	Reason  string
	Message string
}

func notReady(reason, format string, args ...any) readiness {
	return readiness{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// checkEndpointSpec is the part of readiness that needs no API call.
func checkEndpointSpec(ep *webhooksv1alpha1.WebhookEndpoint) readiness {
	u, err := url.Parse(ep.Spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return notReady(webhooksv1alpha1.InvalidURLReason, "spec.url is not an absolute http(s) URL with a host")
	}
	if ep.Spec.Suspend {
		return notReady(webhooksv1alpha1.SuspendedReason, "deliveries wait while spec.suspend is true")
	}
	return readiness{Ready: true, Reason: webhooksv1alpha1.ReadyReason, Message: "endpoint accepts deliveries"}
}

// endpointResolver decides readiness and resolves signing secrets.
//
// Secret values are read with an uncached reader and kept only for Secrets that an endpoint references,
// keyed by resourceVersion. A metadata-only informer tells when a Secret changed, so the operator never
// holds every Secret of the cluster in memory and a rotated secret is used on the next attempt.
type endpointResolver struct {
	// metadata reads Secret metadata from the manager's cache (a metadata-only informer).
	metadata client.Reader
	// live reads Secret values straight from the API server.
	live client.Reader

	mu      sync.Mutex
	secrets map[types.NamespacedName]cachedSecret
}

type cachedSecret struct {
	resourceVersion string
	data            map[string][]byte
}

func newEndpointResolver(metadata, live client.Reader) *endpointResolver {
	return &endpointResolver{metadata: metadata, live: live, secrets: map[types.NamespacedName]cachedSecret{}}
}

// resolve returns the signing secret (nil when the endpoint signs nothing) and the readiness. An error
// is returned only for transient API failures, which the caller retries.
func (r *endpointResolver) resolve(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint) ([]byte, readiness, error) {
	if ready := checkEndpointSpec(ep); !ready.Ready || ep.Spec.SecretRef == nil {
		return nil, ready, nil
	}
	// The Secret is always looked up in the endpoint's own namespace: references never cross tenants.
	key := types.NamespacedName{Namespace: ep.Namespace, Name: ep.Spec.SecretRef.Name}
	data, err := r.secretData(ctx, key)
	if apierrors.IsNotFound(err) {
		return nil, notReady(webhooksv1alpha1.SecretNotFoundReason,
			"Secret %q not found in namespace %q; deliveries wait until it exists", key.Name, key.Namespace), nil
	}
	if err != nil {
		return nil, readiness{}, fmt.Errorf("read Secret %s: %w", key, err)
	}
	secretKey := ep.GetSecretKey()
	value := data[secretKey]
	if len(value) == 0 {
		return nil, notReady(webhooksv1alpha1.SecretKeyMissingReason,
			"Secret %q has no non-empty key %q; deliveries wait until it does", key.Name, secretKey), nil
	}
	return value, readiness{Ready: true, Reason: webhooksv1alpha1.ReadyReason, Message: "endpoint accepts signed deliveries"}, nil
}

func (r *endpointResolver) secretData(ctx context.Context, key types.NamespacedName) (map[string][]byte, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.metadata.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
		}
		return nil, err
	}

	r.mu.Lock()
	cached, ok := r.secrets[key]
	r.mu.Unlock()
	if ok && cached.resourceVersion == meta.ResourceVersion {
		return cached.data, nil
	}

	secret := &corev1.Secret{}
	if err := r.live.Get(ctx, key, secret); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.secrets[key] = cachedSecret{resourceVersion: secret.ResourceVersion, data: secret.Data}
	r.mu.Unlock()
	return secret.Data, nil
}

func (r *endpointResolver) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.secrets, key)
	r.mu.Unlock()
}
