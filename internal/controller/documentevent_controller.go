package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// Sender makes one delivery attempt; *delivery.Sender implements it.
type Sender interface {
	Send(ctx context.Context, r delivery.Request) delivery.Result
}

// DocumentEventReconciler delivers each DocumentEvent to its target endpoints and records every
// attempt in the event's status. Retries are scheduled from status.deliveries[].nextAttemptTime, so
// they survive a restart, and a delivery recorded Delivered is never attempted again.
type DocumentEventReconciler struct {
	client.Client
	Sender   Sender
	Recorder recorder.EventRecorder
	Clock    clock.PassiveClock
	// Jitter returns a random number in [0, 1) for backoff jitter.
	Jitter func() float64

	resolver *endpointResolver
	stats    *endpointStats
	fresh    *freshnessGuard
}

// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents,verbs=get;list;watch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile attempts every due delivery of one event and records the outcomes in one status patch.
func (r *DocumentEventReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := r.Get(ctx, req.NamespacedName, ev); err != nil {
		if apierrors.IsNotFound(err) {
			r.fresh.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ev.DeletionTimestamp.IsZero() || isFinished(ev) {
		return ctrl.Result{}, nil
	}
	// The cache can lag behind our own last status patch; acting on the older copy would resend a
	// delivery that is already recorded Delivered.
	if wait, stale := r.fresh.stale(req.NamespacedName, ev.ResourceVersion); stale {
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	base := ev.DeepCopy()
	defer func() {
		ev.Status.ObservedGeneration = ev.Generation
		if equality.Semantic.DeepEqual(base.Status, ev.Status) {
			return
		}
		if err := r.Status().Patch(ctx, ev, client.MergeFrom(base)); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("patch DocumentEvent status: %w", err))
			return
		}
		r.fresh.wrote(req.NamespacedName, ev.ResourceVersion)
	}()
	return r.reconcile(ctx, ev)
}

func isFinished(ev *webhooksv1alpha1.DocumentEvent) bool {
	return (ev.Status.Phase == webhooksv1alpha1.DocumentEventDelivered || ev.Status.Phase == webhooksv1alpha1.DocumentEventFailed) &&
		ev.Status.ObservedGeneration == ev.Generation
}

func (r *DocumentEventReconciler) reconcile(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent) (ctrl.Result, error) {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.List(ctx, endpoints, client.InNamespace(ev.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list WebhookEndpoints: %w", err)
	}

	if len(ev.Status.Deliveries) == 0 {
		targets, err := matchEndpoints(ev, endpoints.Items)
		if err != nil {
			// The spec is immutable, so a bad selector can never be fixed: fail without retrying.
			ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
			setCondition(ev, webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse,
				webhooksv1alpha1.InvalidSelectorReason, err.Error())
			return ctrl.Result{}, reconcile.TerminalError(err)
		}
		ev.Status.Deliveries = newDeliveries(ev, targets)
	}

	body, err := delivery.Marshal(payloadOf(ev))
	if err != nil {
		ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
		setCondition(ev, webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse,
			webhooksv1alpha1.InvalidPayloadReason, err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}

	attempts, err := r.dueAttempts(ctx, ev, endpoints.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.sendAll(ctx, ev, attempts, body)

	return ctrl.Result{RequeueAfter: summarize(ev, r.Clock.Now())}, nil
}

// attempt is one due delivery with what it needs to be sent.
type attempt struct {
	delivery *webhooksv1alpha1.EndpointDelivery
	endpoint *webhooksv1alpha1.WebhookEndpoint
	secret   []byte
}

// dueAttempts ends deliveries whose endpoint is gone, holds back those whose endpoint is not ready, and
// returns the rest of the due ones.
func (r *DocumentEventReconciler) dueAttempts(
	ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint,
) ([]attempt, error) {
	byName := make(map[string]*webhooksv1alpha1.WebhookEndpoint, len(endpoints))
	for i := range endpoints {
		byName[endpoints[i].Name] = &endpoints[i]
	}
	now := r.Clock.Now()
	var due []attempt
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		if d.Phase.IsFinal() {
			continue
		}
		ep := byName[d.Endpoint]
		if ep == nil || !ep.DeletionTimestamp.IsZero() || deliveryID(ev, ep) != d.DeliveryID {
			markEndpointDeleted(d)
			r.emitOutcome(ev, d)
			continue
		}
		if !isDue(d, now) {
			continue
		}
		secret, ready, err := r.resolver.resolve(ctx, ep)
		if err != nil {
			return nil, err
		}
		if !ready.Ready {
			markWaiting(d, ready)
			continue
		}
		due = append(due, attempt{delivery: d, endpoint: ep, secret: secret})
	}
	return due, nil
}

// sendAll makes the attempts in parallel, so one slow endpoint does not delay the event's others, and
// applies each result to its delivery.
func (r *DocumentEventReconciler) sendAll(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, attempts []attempt, body []byte) {
	results := make([]delivery.Result, len(attempts))
	var wg sync.WaitGroup
	for i, a := range attempts {
		wg.Go(func() {
			results[i] = r.Sender.Send(ctx, delivery.Request{
				URL:     a.endpoint.Spec.URL,
				Body:    body,
				ID:      a.delivery.DeliveryID,
				Secret:  a.secret,
				Timeout: a.endpoint.GetTimeout(),
			})
		})
	}
	wg.Wait()

	logger := log.FromContext(ctx)
	for i, a := range attempts {
		res := results[i]
		recordAttempt(a.delivery, res, retryPolicyOf(a.endpoint), r.Jitter())
		r.emitOutcome(ev, a.delivery)
		logger.V(1).Info("delivery attempt", "endpoint", a.endpoint.Name, "deliveryId", a.delivery.DeliveryID,
			"attempt", a.delivery.Attempts, "statusCode", res.StatusCode, "success", res.Success,
			"durationMs", res.Duration.Milliseconds(), "error", res.Error)
		r.stats.record(client.ObjectKeyFromObject(a.endpoint), webhooksv1alpha1.LastDelivery{
			Event:      ev.Name,
			Time:       metav1.NewTime(res.Start),
			StatusCode: int32(res.StatusCode),
			DurationMs: res.Duration.Milliseconds(),
			Success:    res.Success,
		})
	}
}

// emitOutcome records an Event for the outcomes an operator wants to hear about: a delivery that gave
// up, and one that succeeded only after retries.
func (r *DocumentEventReconciler) emitOutcome(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery) {
	switch {
	case d.Phase == webhooksv1alpha1.DeliveryFailed:
		r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, webhooksv1alpha1.DeliveryFailedEvent, "Deliver",
			"delivery to %s failed after %d attempts (%s): %s", d.Endpoint, d.Attempts, d.Reason, d.LastError)
	case d.Phase == webhooksv1alpha1.DeliveryDelivered && d.Attempts > 1:
		r.Recorder.Eventf(ev, nil, corev1.EventTypeNormal, webhooksv1alpha1.DeliveredAfterRetriesEvent, "Deliver",
			"delivered to %s on attempt %d", d.Endpoint, d.Attempts)
	}
}

// SetupWithManager registers the controller, its index and its watches.
func (r *DocumentEventReconciler) SetupWithManager(mgr ctrl.Manager, shared *Shared, maxConcurrentReconciles int) error {
	r.resolver, r.stats = shared.resolver, shared.stats
	r.fresh = newFreshnessGuard()
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.Jitter == nil {
		r.Jitter = rand.Float64
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("webhook-operator")
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &webhooksv1alpha1.DocumentEvent{},
		waitingOnIndex, waitingOnEndpoints); err != nil {
		return fmt.Errorf("index DocumentEvents by endpoint: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&webhooksv1alpha1.DocumentEvent{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&webhooksv1alpha1.WebhookEndpoint{},
			handler.EnqueueRequestsFromMapFunc(r.eventsWaitingOn),
			builder.WithPredicates(endpointUsabilityChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrentReconciles}).
		Named("documentevent").
		Complete(r)
}

// waitingOnIndex indexes unfinished events by the endpoints they wait on; events that have no targets
// yet are indexed under anyEndpoint, since any new endpoint may match them.
const (
	waitingOnIndex = ".status.waitingOn"
	anyEndpoint    = "*"
)

func waitingOnEndpoints(obj client.Object) []string {
	ev, ok := obj.(*webhooksv1alpha1.DocumentEvent)
	if !ok || isFinished(ev) {
		return nil
	}
	if len(ev.Status.Deliveries) == 0 {
		return []string{anyEndpoint}
	}
	var names []string
	for _, d := range ev.Status.Deliveries {
		if !d.Phase.IsFinal() {
			names = append(names, d.Endpoint)
		}
	}
	return names
}

func (r *DocumentEventReconciler) eventsWaitingOn(ctx context.Context, obj client.Object) []reconcile.Request {
	var requests []reconcile.Request
	for _, key := range []string{obj.GetName(), anyEndpoint} {
		events := &webhooksv1alpha1.DocumentEventList{}
		if err := r.List(ctx, events, client.InNamespace(obj.GetNamespace()), client.MatchingFields{waitingOnIndex: key}); err != nil {
			log.FromContext(ctx).Error(err, "list DocumentEvents waiting on endpoint", "endpoint", obj.GetName())
			continue
		}
		for i := range events.Items {
			requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{
				Namespace: events.Items[i].Namespace, Name: events.Items[i].Name}})
		}
	}
	return requests
}

// endpointUsabilityChanged passes endpoint changes that can start or end deliveries: creation,
// deletion, spec or label edits, and Ready flips. Status-only summaries (lastDelivery) are filtered out.
func endpointUsabilityChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldEP, okOld := e.ObjectOld.(*webhooksv1alpha1.WebhookEndpoint)
			newEP, okNew := e.ObjectNew.(*webhooksv1alpha1.WebhookEndpoint)
			if !okOld || !okNew {
				return false
			}
			return oldEP.Generation != newEP.Generation ||
				!equality.Semantic.DeepEqual(oldEP.Labels, newEP.Labels) ||
				readyStatus(oldEP) != readyStatus(newEP)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func readyStatus(ep *webhooksv1alpha1.WebhookEndpoint) metav1.ConditionStatus {
	if c := apimeta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition); c != nil {
		return c.Status
	}
	return metav1.ConditionUnknown
}
