package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/metrics"
)

// WebhookEndpointReconciler keeps each endpoint's Ready condition true to its URL, suspend flag and
// signing Secret, and writes the delivery summary collected by the DocumentEvent controller.
type WebhookEndpointReconciler struct {
	client.Client
	Recorder recorder.EventRecorder

	shared *Shared
}

// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// Reconcile computes the Ready condition and flushes the delivery summary in one status patch.
func (r *WebhookEndpointReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := r.Get(ctx, req.NamespacedName, ep); err != nil {
		if apierrors.IsNotFound(err) {
			r.shared.health.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ep.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	base := ep.DeepCopy()
	defer func() {
		if equality.Semantic.DeepEqual(base.Status, ep.Status) {
			return
		}
		if err := r.Status().Patch(ctx, ep, client.MergeFrom(base)); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patch WebhookEndpoint status: %w", err))
		}
	}()
	return r.reconcile(ctx, ep)
}

func (r *WebhookEndpointReconciler) reconcile(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint) (ctrl.Result, error) {
	ep.Status.ObservedGeneration = ep.Generation
	requeue := r.shared.health.flushInto(ep, r.shared.clock.Now())

	creds, ready, err := r.shared.resolver.resolve(ctx, ep)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.reconcileTest(ep, creds, ready)
	if blocked, ok := r.shared.health.blockedReadiness(ep); ready.Ready && ok {
		ready = blocked
	}
	if circuit, open := r.shared.health.circuitReadiness(ep); ready.Ready && open {
		ready = circuit
	}
	status := metav1.ConditionFalse
	if ready.Ready {
		status = metav1.ConditionTrue
	}
	// A bad URL or a missing Secret is not retried here: only a spec change or a Secret event can fix
	// it, and both trigger a new reconcile.
	previous := apimeta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition)
	if previous == nil || previous.Status != status || previous.Reason != ready.Reason {
		r.emitReadiness(ep, previous, ready)
	}
	setCondition(ep, webhooksv1alpha1.ReadyCondition, status, ready.Reason, ready.Message)
	setOrRemoveCondition(ep, webhooksv1alpha1.StalledCondition, stalls(ready.Reason), ready.Reason, ready.Message)
	setOrRemoveCondition(ep, webhooksv1alpha1.ReconcilingCondition,
		ready.Reason == webhooksv1alpha1.CircuitOpenReason, ready.Reason, ready.Message)
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// stalls reports whether a readiness reason needs a human: a spec or Secret problem. An open circuit
// heals itself (Reconciling) and a suspended endpoint is as its owner wants it.
func stalls(reason string) bool {
	switch reason {
	case webhooksv1alpha1.ReadyReason, webhooksv1alpha1.SuspendedReason, webhooksv1alpha1.CircuitOpenReason:
		return false
	}
	return true
}

// reconcileTest sends the test webhook requested by the test-requested-at annotation, once per value,
// and records its result in status.lastTest when it is back.
func (r *WebhookEndpointReconciler) reconcileTest(ep *webhooksv1alpha1.WebhookEndpoint, creds credentials, rd readiness) {
	value := ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation]
	if value == "" || (ep.Status.LastTest != nil && ep.Status.LastTest.RequestedAt == value) {
		return
	}
	key := client.ObjectKeyFromObject(ep)
	if res, done := r.shared.tests.result(key, value); done {
		ep.Status.LastTest = res
		metrics.RecordTest(res.Success)
		return
	}
	notSent := func(reason string) {
		now := metav1.NewTime(r.shared.clock.Now())
		ep.Status.LastTest = &webhooksv1alpha1.TestResult{RequestedAt: value, Time: &now, Error: "not sent: " + reason}
		metrics.RecordTest(false)
	}
	if !rd.Ready && rd.Reason != webhooksv1alpha1.CircuitOpenReason {
		// A test is a diagnosis: it goes out even with the circuit open, but never unsigned or to a
		// blocked or invalid URL.
		notSent(rd.Reason + ": " + rd.Message)
		return
	}
	req, err := testRequest(ep, value, creds, r.shared.clock.Now())
	if err != nil {
		notSent(err.Error())
		return
	}
	r.shared.tests.start(key, value, r.shared.dispatcher.sender, req, func() { r.shared.health.wake(ep) })
}

// emitReadiness records an Event when the endpoint stops accepting deliveries, for each new reason,
// and when it accepts them again. The first observation of a ready endpoint is not news.
func (r *WebhookEndpointReconciler) emitReadiness(ep *webhooksv1alpha1.WebhookEndpoint, previous *metav1.Condition, ready readiness) {
	switch {
	case !ready.Ready:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeWarning, webhooksv1alpha1.EndpointNotReadyEvent, "Validate",
			"%s: %s", ready.Reason, ready.Message)
	case previous != nil && previous.Status == metav1.ConditionFalse:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.EndpointReadyEvent, "Validate", "%s", ready.Message)
	}
}

// SetupWithManager registers the controller, its Secret index and its watches.
func (r *WebhookEndpointReconciler) SetupWithManager(mgr ctrl.Manager, shared *Shared) error {
	r.shared = shared
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("webhook-operator")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &webhooksv1alpha1.WebhookEndpoint{},
		secretRefIndex, func(obj client.Object) []string {
			ep, ok := obj.(*webhooksv1alpha1.WebhookEndpoint)
			if !ok {
				return nil
			}
			return referencedSecrets(ep)
		}); err != nil {
		return fmt.Errorf("index WebhookEndpoints by Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&webhooksv1alpha1.WebhookEndpoint{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Metadata only: a Secret's resourceVersion is enough to know it changed, and Secret values stay
		// out of the cache.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.endpointsUsingSecret)).
		WatchesRawSource(source.Channel(shared.health.notify,
			&handler.TypedEnqueueRequestForObject[*webhooksv1alpha1.WebhookEndpoint]{})).
		Named("webhookendpoint").
		Complete(r)
}

// secretRefIndex indexes endpoints by every Secret they reference (signing and TLS).
const secretRefIndex = ".spec.secretRefs"

func referencedSecrets(ep *webhooksv1alpha1.WebhookEndpoint) []string {
	var names []string
	if ep.Spec.SecretRef != nil {
		names = append(names, ep.Spec.SecretRef.Name)
	}
	if t := ep.Spec.TLS; t != nil {
		if t.CASecretRef != nil {
			names = append(names, t.CASecretRef.Name)
		}
		if t.ClientCertSecretRef != nil {
			names = append(names, t.ClientCertSecretRef.Name)
		}
	}
	return names
}

func (r *WebhookEndpointReconciler) endpointsUsingSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.List(ctx, endpoints, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{secretRefIndex: secret.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "list WebhookEndpoints using Secret", "secret", secret.GetName())
		return nil
	}
	requests := make([]reconcile.Request, 0, len(endpoints.Items))
	for i := range endpoints.Items {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{
			Namespace: endpoints.Items[i].Namespace, Name: endpoints.Items[i].Name}})
	}
	return requests
}
