package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
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
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/metrics"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// Sender makes one delivery attempt; *delivery.Sender implements it.
type Sender interface {
	Send(ctx context.Context, r delivery.Request) delivery.Result
}

// DocumentEventReconciler decides which deliveries of an event are due, hands them to the dispatcher,
// and records finished attempts in the event's status. Retries are scheduled from
// status.deliveries[].nextAttemptTime, so they survive a restart, and a delivery recorded Delivered is
// never attempted again. On the happy path an event costs one status write: the one that records the
// outcome.
type DocumentEventReconciler struct {
	client.Client
	// APIReader reads events uncached when results are recorded during shutdown.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// DefaultTTLAfterFinished applies to events without spec.ttlSecondsAfterFinished; 0 keeps them.
	DefaultTTLAfterFinished time.Duration
	// Jitter returns a random number in [0, 1) for backoff jitter.
	Jitter func() float64

	shared *Shared
	fresh  *freshnessGuard
}

// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile records finished attempts, starts the due ones, and patches the status once.
func (r *DocumentEventReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := r.Get(ctx, req.NamespacedName, ev); err != nil {
		if apierrors.IsNotFound(err) {
			r.fresh.forget(req.NamespacedName)
			r.shared.dispatcher.discard(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ev.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	// The cache can lag behind our own last status patch; acting on the older copy would resend a
	// delivery that is already recorded Delivered.
	if wait, stale := r.fresh.stale(req.NamespacedName, ev.ResourceVersion); stale {
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	base := ev.DeepCopy()
	if !requestRedelivery(ev) && isFinished(ev) {
		// A result that arrives after its delivery ended (say, the endpoint was deleted meanwhile)
		// has nothing left to change.
		r.shared.dispatcher.discard(req.NamespacedName)
		return r.expire(ctx, ev)
	}
	recorded := r.shared.dispatcher.finished(req.NamespacedName)
	defer func() {
		if err := r.patchStatus(ctx, base, ev); err != nil {
			retErr = errors.Join(retErr, err)
			return
		}
		r.shared.dispatcher.ack(req.NamespacedName, recorded)
	}()
	return r.reconcile(ctx, base, ev, recorded)
}

// patchStatus writes the status when it changed, and remembers the written version. observedGeneration
// only moves with a real change: while the first attempts are in flight it stays -1, so kstatus reads
// the event as in progress rather than current.
func (r *DocumentEventReconciler) patchStatus(ctx context.Context, base, ev *webhooksv1alpha1.DocumentEvent) error {
	if equality.Semantic.DeepEqual(base.Status, ev.Status) {
		return nil
	}
	ev.Status.ObservedGeneration = ev.Generation
	// Diff the status alone: the spec carries the whole payload and cannot change, so encoding it twice
	// per write would only cost CPU.
	patch, err := client.MergeFrom(&webhooksv1alpha1.DocumentEvent{Status: base.Status}).
		Data(&webhooksv1alpha1.DocumentEvent{Status: ev.Status})
	if err != nil {
		return fmt.Errorf("compute DocumentEvent status patch: %w", err)
	}
	if err := r.Status().Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patch DocumentEvent status: %w", err)
	}
	r.fresh.wrote(client.ObjectKeyFromObject(ev), ev.ResourceVersion)
	return nil
}

func isFinished(ev *webhooksv1alpha1.DocumentEvent) bool {
	return (ev.Status.Phase == webhooksv1alpha1.DocumentEventDelivered || ev.Status.Phase == webhooksv1alpha1.DocumentEventFailed) &&
		ev.Status.ObservedGeneration == ev.Generation
}

func (r *DocumentEventReconciler) reconcile(
	ctx context.Context, base, ev *webhooksv1alpha1.DocumentEvent, finished []finishedAttempt,
) (ctrl.Result, error) {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.List(ctx, endpoints, client.InNamespace(ev.Namespace)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list WebhookEndpoints: %w", err)
	}

	if err := ensureTargets(ev, endpoints.Items); err != nil {
		return ctrl.Result{}, err
	}

	// Most reconciles only record results; the payload is encoded once, and only when an attempt starts.
	body := sync.OnceValues(func() ([]byte, error) { return delivery.Marshal(payloadOf(ev)) })

	learned := r.applyFinished(ctx, ev, endpoints.Items, finished)
	hold, held, err := r.startDue(ctx, ev, endpoints.Items, body)
	if err != nil {
		return ctrl.Result{}, err
	}
	requeue := summarize(ev, r.shared.clock.Now())
	if hold > 0 && (requeue == 0 || hold < requeue) {
		requeue = hold
	}

	if !learned && !held && len(base.Status.Deliveries) == 0 && len(ev.Status.Deliveries) > 0 {
		// The first attempts are only in flight: nothing is known yet that a restart would need, so
		// the outcome is written once, when it arrives.
		ev.Status = base.Status
	}
	if ev.Status.Phase == webhooksv1alpha1.DocumentEventDelivered || ev.Status.Phase == webhooksv1alpha1.DocumentEventFailed {
		if ttl, ok := r.ttl(ev); ok {
			requeue = max(ttl, time.Millisecond)
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// ensureTargets fills status.deliveries with the matching endpoints the first time the event is seen
// (or, since the first write waits for an outcome, until an outcome was recorded).
func ensureTargets(ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint) error {
	if len(ev.Status.Deliveries) > 0 {
		return nil
	}
	targets, err := matchEndpoints(ev, endpoints)
	if err != nil {
		// The spec is immutable, so a bad selector can never be fixed: fail without retrying.
		setEventStatus(ev, webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.InvalidSelectorReason, err.Error())
		return reconcile.TerminalError(err)
	}
	ev.Status.Deliveries = newDeliveries(ev, targets)
	return nil
}

// applyFinished records finished attempts in their deliveries and reports whether the status learned
// anything a restart would need.
func (r *DocumentEventReconciler) applyFinished(
	ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint, finished []finishedAttempt,
) bool {
	byName := endpointsByName(endpoints)
	learned := false
	for _, f := range finished {
		d := deliveryByID(ev, f.deliveryID)
		if d == nil || d.Phase.IsFinal() || alreadyRecorded(d, f.result) {
			continue
		}
		// When the endpoint is gone, the delivery stays open here and startDue ends it as EndpointDeleted.
		policy := retryPolicy{maxAttempts: math.MaxInt32, initialInterval: time.Second, maxInterval: time.Second}
		ep := byName[d.Endpoint]
		if ep != nil {
			policy = retryPolicyOf(ep)
		}
		recordAttempt(d, f.result, policy, r.Jitter())
		if d.Phase.IsFinal() {
			metrics.RecordFinished(d.Phase == webhooksv1alpha1.DeliveryDelivered, d.Attempts)
		}
		if f.result.Blocked {
			// Retrying cannot help until the URL changes; startDue holds it while the block stands.
			d.Reason, d.NextAttemptTime = webhooksv1alpha1.DestinationBlockedReason, nil
		}
		r.emitOutcome(ev, d)
		if ep != nil {
			r.emitCircuit(ep, f.circuit)
		}
		learned = true
		log.FromContext(ctx).V(1).Info("delivery attempt", "endpoint", d.Endpoint, "deliveryId", d.DeliveryID,
			"attempt", d.Attempts, "statusCode", f.result.StatusCode, "success", f.result.Success,
			"durationMs", f.result.Duration.Milliseconds(), "error", f.result.Error)
	}
	return learned
}

// alreadyRecorded makes recording idempotent: a result whose start time is already the delivery's
// last attempt was recorded by an earlier reconcile (or by the shutdown flush).
func alreadyRecorded(d *webhooksv1alpha1.EndpointDelivery, res delivery.Result) bool {
	return d.LastAttemptTime != nil && d.LastAttemptTime.Equal(&metav1.MicroTime{Time: res.Start.Truncate(time.Microsecond)})
}

// startDue ends deliveries whose endpoint is gone, holds back those whose endpoint is not ready, and
// hands the due ones to the dispatcher. It returns how long until a held delivery should be looked at
// again (0 when only watches can unblock it), and whether any delivery was ended or held.
func (r *DocumentEventReconciler) startDue(
	ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint,
	body func() ([]byte, error),
) (hold time.Duration, held bool, err error) {
	byName := endpointsByName(endpoints)
	now := r.shared.clock.Now()
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		if d.Phase.IsFinal() || r.shared.dispatcher.isBusy(d.DeliveryID) {
			continue
		}
		ep := byName[d.Endpoint]
		if ep == nil || !ep.DeletionTimestamp.IsZero() || deliveryID(ev, ep) != d.DeliveryID {
			markEndpointDeleted(d)
			metrics.RecordFinished(false, d.Attempts)
			r.emitOutcome(ev, d)
			held = true
			continue
		}
		if !isDue(d, now) {
			continue
		}
		creds, rd, resolveErr := r.shared.resolver.resolve(ctx, ep)
		if resolveErr != nil {
			return 0, held, resolveErr
		}
		if blocked, ok := r.shared.health.blockedReadiness(ep); rd.Ready && ok {
			rd = blocked
		}
		if !rd.Ready {
			markWaiting(d, rd)
			held = true
			continue
		}
		if ok, wait := r.shared.health.admit(ep, now); !ok {
			circuit, _ := r.shared.health.circuitReadiness(ep)
			markWaiting(d, circuit)
			held = true
			if hold == 0 || wait < hold {
				hold = wait
			}
			continue
		}
		payload, marshalErr := body()
		if marshalErr != nil {
			// The spec is immutable: a payload that cannot be encoded never will be.
			setEventStatus(ev, webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.InvalidPayloadReason, marshalErr.Error())
			return 0, true, reconcile.TerminalError(marshalErr)
		}
		r.shared.dispatcher.submit(job{
			event:      client.ObjectKeyFromObject(ev),
			endpoint:   ep,
			deliveryID: d.DeliveryID,
			request:    attemptRequest(ep, d.DeliveryID, payload, creds),
		})
		if d.Reason == webhooksv1alpha1.EndpointNotReadyReason {
			d.Reason, d.LastError = "", ""
		}
	}
	return hold, held, nil
}

func attemptRequest(ep *webhooksv1alpha1.WebhookEndpoint, id string, body []byte, creds credentials) delivery.Request {
	req := delivery.Request{
		URL:     ep.Spec.URL,
		Body:    body,
		ID:      id,
		Timeout: ep.GetTimeout(),
		Scheme:  signature.Scheme(ep.GetSignatureScheme()),
		TLS:     creds.tls,
	}
	if len(creds.signing) > 0 {
		req.Secret = creds.signing[0]
	}
	if len(creds.signing) > 1 {
		req.PreviousSecret = creds.signing[1]
	}
	return req
}

func endpointsByName(endpoints []webhooksv1alpha1.WebhookEndpoint) map[string]*webhooksv1alpha1.WebhookEndpoint {
	byName := make(map[string]*webhooksv1alpha1.WebhookEndpoint, len(endpoints))
	for i := range endpoints {
		byName[endpoints[i].Name] = &endpoints[i]
	}
	return byName
}

func deliveryByID(ev *webhooksv1alpha1.DocumentEvent, id string) *webhooksv1alpha1.EndpointDelivery {
	for i := range ev.Status.Deliveries {
		if ev.Status.Deliveries[i].DeliveryID == id {
			return &ev.Status.Deliveries[i]
		}
	}
	return nil
}

// ttl returns how long until a finished event expires, if a TTL applies.
func (r *DocumentEventReconciler) ttl(ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool) {
	ttl := r.DefaultTTLAfterFinished
	if ev.Spec.TTLSecondsAfterFinished != nil {
		ttl = time.Duration(*ev.Spec.TTLSecondsAfterFinished) * time.Second
	} else if ttl <= 0 {
		return 0, false
	}
	finishedAt := r.shared.clock.Now()
	if c := apimeta.FindStatusCondition(ev.Status.Conditions, webhooksv1alpha1.DeliveredCondition); c != nil {
		finishedAt = c.LastTransitionTime.Time
	}
	return finishedAt.Add(ttl).Sub(r.shared.clock.Now()), true
}

// expire deletes a finished event once its TTL has passed.
func (r *DocumentEventReconciler) expire(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent) (ctrl.Result, error) {
	remaining, ok := r.ttl(ev)
	if !ok {
		return ctrl.Result{}, nil
	}
	if remaining > 0 {
		return ctrl.Result{RequeueAfter: remaining}, nil
	}
	err := r.Delete(ctx, ev, client.Preconditions{UID: &ev.UID})
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("delete expired DocumentEvent: %w", err)
	}
	log.FromContext(ctx).V(1).Info("deleted finished DocumentEvent after its TTL", "phase", ev.Status.Phase)
	return ctrl.Result{}, nil
}

// recordOnShutdown writes the results that finished while the manager was stopping, reading each event
// straight from the API server since the controllers have stopped.
func (r *DocumentEventReconciler) recordOnShutdown(ctx context.Context, events []types.NamespacedName) {
	logger := log.FromContext(ctx).WithName("shutdown")
	for _, key := range events {
		finished := r.shared.dispatcher.finished(key)
		ev := &webhooksv1alpha1.DocumentEvent{}
		if err := r.APIReader.Get(ctx, key, ev); err != nil {
			logger.Error(err, "read DocumentEvent to record attempts", "event", key)
			continue
		}
		endpoints := &webhooksv1alpha1.WebhookEndpointList{}
		if err := r.APIReader.List(ctx, endpoints, client.InNamespace(key.Namespace)); err != nil {
			logger.Error(err, "list WebhookEndpoints to record attempts", "event", key)
			continue
		}
		base := ev.DeepCopy()
		if err := ensureTargets(ev, endpoints.Items); err != nil {
			logger.Error(err, "match endpoints to record attempts", "event", key)
			continue
		}
		r.applyFinished(ctx, ev, endpoints.Items, finished)
		summarize(ev, r.shared.clock.Now())
		if err := r.patchStatus(ctx, base, ev); err != nil {
			logger.Error(err, "record attempts at shutdown", "event", key)
			continue
		}
		r.shared.dispatcher.ack(key, finished)
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

// emitCircuit records an Event when an attempt opened or closed the endpoint's circuit.
func (r *DocumentEventReconciler) emitCircuit(ep *webhooksv1alpha1.WebhookEndpoint, change circuitChange) {
	switch change {
	case circuitOpened:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeWarning, webhooksv1alpha1.CircuitOpenedEvent, "Deliver",
			"circuit opened after %d consecutive failed attempts; probing every %s", ep.GetFailureThreshold(), ep.GetCooldown())
	case circuitClosedAgain:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.CircuitClosedEvent, "Deliver",
			"circuit closed: an attempt succeeded")
	}
}

// SetupWithManager registers the controller, its index and its watches.
func (r *DocumentEventReconciler) SetupWithManager(mgr ctrl.Manager, shared *Shared, maxConcurrentReconciles int) error {
	r.shared = shared
	r.fresh = newFreshnessGuard()
	if r.Jitter == nil {
		r.Jitter = rand.Float64
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("webhook-operator")
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	shared.dispatcher.onShutdown = r.recordOnShutdown
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &webhooksv1alpha1.DocumentEvent{},
		waitingOnIndex, waitingOnEndpoints); err != nil {
		return fmt.Errorf("index DocumentEvents by endpoint: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&webhooksv1alpha1.DocumentEvent{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&webhooksv1alpha1.WebhookEndpoint{},
			handler.EnqueueRequestsFromMapFunc(r.eventsWaitingOn),
			builder.WithPredicates(endpointUsabilityChanged())).
		WatchesRawSource(source.Channel(shared.dispatcher.notify,
			&handler.TypedEnqueueRequestForObject[*webhooksv1alpha1.DocumentEvent]{})).
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
