package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/metrics"
	"github.com/1flow/webhook-operator/internal/redact"
)

// WebhookEndpointReconciler keeps each endpoint's Ready condition true to the readiness chain (its
// URL, suspend flag, Secrets, egress and circuit), writes the delivery summary the engine collects, and
// runs test webhooks.
type WebhookEndpointReconciler struct {
	client.Client
	// APIReader reads endpoints uncached when their summaries are written during shutdown.
	APIReader client.Reader
	Recorder  recorder.EventRecorder

	shared *Shared
}

// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// endpointScope is what one WebhookEndpoint reconcile works on.
type endpointScope struct {
	ep, base  *webhooksv1alpha1.WebhookEndpoint
	readiness engine.Readiness
	// summary is the engine's summary written by this reconcile; confirmed to the engine after the patch.
	summary *engine.Summary
	// testRecorded is the test value whose result this reconcile writes.
	testRecorded string
	afterPatch   []func()
}

func (s *endpointScope) recordTest(result *webhooksv1alpha1.TestResult) {
	s.ep.Status.LastTest = result
	s.testRecorded = result.RequestedAt
	success := result.Success
	s.afterPatch = append(s.afterPatch, func() { metrics.RecordTest(success) })
}

// Reconcile computes the Ready condition, flushes the delivery summary and records test results in one
// status patch. What the patch records is confirmed to the engine, and evented, only once it succeeded.
func (r *WebhookEndpointReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := r.Get(ctx, req.NamespacedName, ep); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.forget(ctx, req.Namespace, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if !ep.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.forget(ctx, ep.Namespace, req.NamespacedName)
	}
	r.shared.engine.ObserveEndpoint(req.NamespacedName, ep.UID)
	if ep.Status.ObservedGeneration != ep.Generation {
		// The spec changed, perhaps its Secret references: release the values no endpoint uses now.
		if err := r.shared.resolver.prune(ctx, ep.Namespace); err != nil {
			return ctrl.Result{}, fmt.Errorf("release unused Secret values: %w", err)
		}
	}

	s := &endpointScope{ep: ep, base: ep.DeepCopy()}
	defer func() {
		if !equality.Semantic.DeepEqual(s.base.Status, ep.Status) {
			// With the resourceVersion as a precondition: a patch computed from a stale cached copy would
			// leave out a summary field that the copy already shows, while the object no longer has it.
			patch := client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{})
			if err := r.Status().Patch(ctx, ep, patch); err != nil {
				result, retErr = ctrl.Result{}, errors.Join(retErr, fmt.Errorf("patch WebhookEndpoint status: %w", err))
				return
			}
		}
		if s.summary != nil {
			r.shared.engine.Flushed(ep.UID, *s.summary)
		}
		if s.testRecorded != "" {
			r.shared.engine.RecordedTest(ep.UID, s.testRecorded)
		}
		for _, f := range s.afterPatch {
			f()
		}
	}()
	return r.reconcile(ctx, s)
}

// forget releases what the operator holds for a deleted endpoint: engine state and Secret values that
// no other endpoint of the namespace uses.
func (r *WebhookEndpointReconciler) forget(ctx context.Context, namespace string, key client.ObjectKey) error {
	r.shared.engine.ForgetEndpoint(key)
	if err := r.shared.resolver.prune(ctx, namespace); err != nil {
		return fmt.Errorf("release Secret values of deleted endpoint: %w", err)
	}
	return nil
}

func (r *WebhookEndpointReconciler) reconcile(ctx context.Context, s *endpointScope) (ctrl.Result, error) {
	ep := s.ep
	ep.Status.ObservedGeneration = ep.Generation
	ep.Status.URL = redact.URL(ep.Spec.URL)
	var requeue ctrl.Result
	if summary, due, wait := r.shared.engine.SummaryDue(ep.UID, r.shared.statusFlushInterval); due {
		applySummary(ep, summary)
		s.summary = &summary
	} else {
		requeue.RequeueAfter = wait
	}

	in, err := r.shared.resolver.gather(ctx, ep)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.readiness, _ = r.shared.engine.Readiness(engineEndpoint(in))
	r.reconcileTest(s)
	newlineNote := ""
	if s.readiness.Ready {
		// Only with Ready=True: a not-ready message says what holds deliveries, and the engine reads a
		// DestinationBlocked one back after a restart.
		newlineNote = signingSecretNewlineNote(in)
	}
	r.setReadiness(s, newlineNote)
	return requeue, nil
}

// applySummary copies the engine's delivery summary into the status.
func applySummary(ep *webhooksv1alpha1.WebhookEndpoint, summary engine.Summary) {
	if summary.Last != nil {
		ep.Status.LastDelivery = summary.Last
	}
	ep.Status.ConsecutiveFailures = summary.Failures
	if !summary.RetryAfterUntil.IsZero() {
		// Rounded up to the second that metav1.Time keeps: a pause read back after a restart never ends
		// before the receiver asked.
		until := metav1.NewTime(ceilToSecond(summary.RetryAfterUntil))
		ep.Status.RetryAfterUntil = &until
	}
}

// recordSummariesOnShutdown writes the summaries that changed while the manager was stopping, reading
// each endpoint straight from the API server since the cache may have stopped: above all a receiver's
// Retry-After pause, which the next leader must honour.
func (r *WebhookEndpointReconciler) recordSummariesOnShutdown(ctx context.Context, endpoints []types.NamespacedName) {
	logger := log.FromContext(ctx).WithName("shutdown")
	for _, key := range endpoints {
		ep := &webhooksv1alpha1.WebhookEndpoint{}
		if err := r.APIReader.Get(ctx, key, ep); err != nil {
			if !apierrors.IsNotFound(err) {
				logger.Error(err, "read WebhookEndpoint to record its delivery summary at shutdown", "endpoint", key)
			}
			continue
		}
		summary, due, _ := r.shared.engine.SummaryDue(ep.UID, 0)
		if !due {
			continue
		}
		patch := client.MergeFromWithOptions(ep.DeepCopy(), client.MergeFromWithOptimisticLock{})
		applySummary(ep, summary)
		if err := r.Status().Patch(ctx, ep, patch); err != nil {
			logger.Error(err, "record delivery summary at shutdown", "endpoint", key)
			continue
		}
		r.shared.engine.Flushed(ep.UID, summary)
	}
}

// setReadiness writes the Ready, Stalled and Reconciling conditions and queues their Events.
// newlineNote, when set, warns about a signing secret that ends in a newline: the endpoint still works,
// so it is added to the message, and evented when the message starts to carry it.
func (r *WebhookEndpointReconciler) setReadiness(s *endpointScope, newlineNote string) {
	ep, rd := s.ep, s.readiness
	status := metav1.ConditionFalse
	if rd.Ready {
		status = metav1.ConditionTrue
	}
	message := rd.Message
	if newlineNote != "" {
		message += "; warning: " + newlineNote
	}
	// A bad URL or a missing Secret is not retried here: only a spec change or a Secret event can fix
	// it, and both trigger a new reconcile.
	previous := apimeta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition)
	if previous == nil || previous.Status != status || previous.Reason != rd.Reason {
		var before *metav1.Condition
		if previous != nil {
			before = previous.DeepCopy()
		}
		s.afterPatch = append(s.afterPatch, func() { r.emitReadiness(ep, before, rd) })
	}
	if newlineNote != "" && (previous == nil || !strings.Contains(previous.Message, newlineNote)) {
		s.afterPatch = append(s.afterPatch, func() {
			r.Recorder.Eventf(ep, nil, corev1.EventTypeWarning, webhooksv1alpha1.SecretEndsWithNewlineEvent, "Validate",
				"%s", newlineNote)
		})
	}
	setCondition(ep, webhooksv1alpha1.ReadyCondition, status, rd.Reason, message)
	setOrRemoveCondition(ep, webhooksv1alpha1.StalledCondition, stalls(rd.Reason), rd.Reason, message)
	setOrRemoveCondition(ep, webhooksv1alpha1.ReconcilingCondition,
		rd.Reason == webhooksv1alpha1.CircuitOpenReason, rd.Reason, message)
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

// emitReadiness records an Event when the endpoint stops accepting deliveries, for each new reason,
// and when it accepts them again. The first observation of a ready endpoint is not news. A suspension is
// its owner's choice, not a fault: it is a Normal Suspended Event, and clearing it a Normal Resumed one.
func (r *WebhookEndpointReconciler) emitReadiness(ep *webhooksv1alpha1.WebhookEndpoint, previous *metav1.Condition, rd engine.Readiness) {
	wasSuspended := previous != nil && previous.Reason == webhooksv1alpha1.SuspendedReason
	switch {
	case rd.Reason == webhooksv1alpha1.SuspendedReason:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.SuspendedEvent, "Suspend", "%s", rd.Message)
		return
	case wasSuspended:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.ResumedEvent, "Resume",
			"spec.suspend is false; %s", rd.Message)
	}
	switch {
	case !rd.Ready:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeWarning, webhooksv1alpha1.EndpointNotReadyEvent, "Validate",
			"%s: %s", rd.Reason, rd.Message)
	case previous != nil && previous.Status == metav1.ConditionFalse && !wasSuspended:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.EndpointReadyEvent, "Validate", "%s", rd.Message)
	}
}

// SetupWithManager registers the controller, its Secret index and its watches.
func (r *WebhookEndpointReconciler) SetupWithManager(mgr ctrl.Manager, shared *Shared) error {
	r.shared = shared
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("webhook-operator")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	shared.recordSummariesOnShutdown = r.recordSummariesOnShutdown
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
		// A cluster administrator's private-egress label changes what the namespace's endpoints may
		// reach: their readiness is looked at again, without a restart.
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.endpointsInNamespace),
			builder.WithPredicates(privateEgressLabelChanged())).
		WatchesRawSource(wakeSource(shared.engine.EndpointWakes)).
		Named("webhookendpoint").
		Complete(r)
}

// PrivateEgressHint is how a refusal of a private address says it can be allowed.
const PrivateEgressHint = "a cluster administrator can allow private addresses for this namespace with the label " +
	webhooksv1alpha1.PrivateEgressLabel + "=" + webhooksv1alpha1.PrivateEgressAllowed

func privateEgressLabelChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetLabels()[webhooksv1alpha1.PrivateEgressLabel] !=
				e.ObjectNew.GetLabels()[webhooksv1alpha1.PrivateEgressLabel]
		},
	}
}

func (r *WebhookEndpointReconciler) endpointsInNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.List(ctx, endpoints, client.InNamespace(ns.GetName())); err != nil {
		log.FromContext(ctx).Error(err, "list WebhookEndpoints of Namespace", "namespace", ns.GetName())
		return nil
	}
	return requestsFor(endpoints)
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
	return requestsFor(listEndpointsUsingSecret(ctx, r.Client, secret))
}

// listEndpointsUsingSecret lists, from the cache, the endpoints that reference the Secret. A failed list
// is logged and lists none: a watch handler has no way to retry.
func listEndpointsUsingSecret(ctx context.Context, c client.Reader, secret client.Object) *webhooksv1alpha1.WebhookEndpointList {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := c.List(ctx, endpoints, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{secretRefIndex: secret.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "list WebhookEndpoints using Secret", "secret", secret.GetName())
	}
	return endpoints
}

func requestsFor(endpoints *webhooksv1alpha1.WebhookEndpointList) []reconcile.Request {
	requests := make([]reconcile.Request, 0, len(endpoints.Items))
	for i := range endpoints.Items {
		requests = append(requests, reconcile.Request{NamespacedName: keyOf(&endpoints.Items[i])})
	}
	return requests
}

func ceilToSecond(t time.Time) time.Time {
	if down := t.Truncate(time.Second); !down.Equal(t) {
		return down.Add(time.Second)
	}
	return t
}
