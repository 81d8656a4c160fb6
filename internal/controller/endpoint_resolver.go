package controller

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
)

// endpointResolver reads endpoints and the Secrets they reference, and implements engine.Endpoints.
//
// Secret values are read with an uncached reader and kept only for Secrets that an endpoint references,
// keyed by resourceVersion. A metadata-only informer tells when a Secret changed, so the operator never
// holds every Secret of the cluster in memory, and a rotated secret or certificate is used on the next
// attempt. Values of Secrets that no endpoint references any more are released (prune). Every lookup
// uses the endpoint's own namespace: references never cross tenants.
type endpointResolver struct {
	// cached reads endpoints and Secret metadata from the manager's cache.
	cached client.Reader
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

// Lookup implements engine.Endpoints: the endpoint as the cache has it now, with its Secrets resolved.
func (r *endpointResolver) Lookup(ctx context.Context, key types.NamespacedName) (engine.Endpoint, bool, error) {
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := r.cached.Get(ctx, key, ep); err != nil {
		if apierrors.IsNotFound(err) {
			return engine.Endpoint{}, false, nil
		}
		return engine.Endpoint{}, false, err
	}
	if !ep.DeletionTimestamp.IsZero() {
		return engine.Endpoint{}, false, nil
	}
	in, err := r.gather(ctx, ep)
	if err != nil {
		return engine.Endpoint{}, false, err
	}
	return engineEndpoint(in), true, nil
}

// gather reads what the readiness chain needs. An error is returned only for transient API failures.
func (r *endpointResolver) gather(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint) (*readinessInput, error) {
	in := &readinessInput{ep: ep, requireHTTPS: r.requireHTTPS, egress: r.egress}
	var err error
	if in.allowPrivate, err = r.privateEgressAllowed(ctx, ep.Namespace); err != nil {
		return nil, err
	}
	if in.allowPrivate {
		in.egress = r.egress.AllowingPrivate()
	}
	if ref := ep.Spec.SecretRef; ref != nil {
		if in.signing, err = r.secret(ctx, ep.Namespace, ref.Name); err != nil {
			return nil, err
		}
	}
	if t := ep.Spec.TLS; t != nil {
		if t.CASecretRef != nil {
			if in.ca, err = r.secret(ctx, ep.Namespace, t.CASecretRef.Name); err != nil {
				return nil, err
			}
		}
		if t.ClientCertSecretRef != nil {
			if in.clientCert, err = r.secret(ctx, ep.Namespace, t.ClientCertSecretRef.Name); err != nil {
				return nil, err
			}
		}
	}
	return in, nil
}

// privateEgressAllowed reports whether a cluster administrator labelled the namespace to reach private
// addresses. Only the Namespace's metadata is read, from the cache, and only when private ranges are
// refused at all.
func (r *endpointResolver) privateEgressAllowed(ctx context.Context, namespace string) (bool, error) {
	if r.egress == nil || len(r.egress.Private) == 0 {
		return false, nil
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := r.cached.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("read Namespace %s: %w", namespace, err)
	}
	return ns.Labels[webhooksv1alpha1.PrivateEgressLabel] == webhooksv1alpha1.PrivateEgressAllowed, nil
}

// secret returns the Secret's data, or nil when it does not exist.
func (r *endpointResolver) secret(ctx context.Context, namespace, name string) (*cachedSecret, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.cached.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
			return nil, nil
		}
		return nil, err
	}

	r.mu.Lock()
	cached, ok := r.secrets[key]
	r.mu.Unlock()
	if ok && cached.resourceVersion == meta.ResourceVersion {
		return &cached, nil
	}

	secret := &corev1.Secret{}
	if err := r.live.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted since the cache saw it: the metadata watch brings the next change.
			r.forget(key)
			return nil, nil
		}
		return nil, err
	}
	cached = cachedSecret{resourceVersion: secret.ResourceVersion, data: secret.Data}
	r.mu.Lock()
	r.secrets[key] = cached
	r.mu.Unlock()
	return &cached, nil
}

func (r *endpointResolver) forget(key types.NamespacedName) {
	r.mu.Lock()
	delete(r.secrets, key)
	r.mu.Unlock()
}

// prune releases the values of the namespace's Secrets that none of its endpoints references.
func (r *endpointResolver) prune(ctx context.Context, namespace string) error {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.cached.List(ctx, endpoints, client.InNamespace(namespace)); err != nil {
		return err
	}
	referenced := map[string]bool{}
	for i := range endpoints.Items {
		for _, name := range referencedSecrets(&endpoints.Items[i]) {
			referenced[name] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.secrets {
		if key.Namespace == namespace && !referenced[key.Name] {
			delete(r.secrets, key)
		}
	}
	return nil
}

// cachedSecrets counts the Secret values held in memory.
func (r *endpointResolver) cachedSecrets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.secrets)
}

func keyOf(obj client.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
}
