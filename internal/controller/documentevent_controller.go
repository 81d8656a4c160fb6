package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/go-logr/logr"
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

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// DocumentEventReconciler translates between DocumentEvents and the engine: it decides which deliveries
// of an event are due and submits them, and records the engine's outcomes in the event's status.
// Retries are scheduled from status.deliveries[].nextAttemptTime, so they survive a restart, and a
// delivery recorded Delivered is never attempted again. On the happy path an event costs one status
// write: the one that records the outcome.
type DocumentEventReconciler struct {
	client.Client
	// APIReader reads events uncached when outcomes are recorded during shutdown.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// DefaultTTLAfterFinished applies to events without spec.ttlSecondsAfterFinished; 0 keeps them.
	DefaultTTLAfterFinished time.Duration
	// Jitter returns a random number in [0, 1) for backoff jitter.
	Jitter func() float64

	shared *Shared
	fresh  *freshnessGuard
	// scheduleFinished queues an event this reconciler finished for the finished-events controller,
	// when its TTL runs out.
	scheduleFinished func(key types.NamespacedName, after time.Duration)
	// locks serializes the reconcile of an event with the recording of its outcomes at shutdown.
	locks keyedMutex
}

// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=documentevents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=webhooks.1flow.io,resources=webhookendpoints,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the event's phases over one scope and patches the status once. Outcomes are
// acknowledged to the engine, and their Events and metrics emitted, only after that patch succeeded.
func (r *DocumentEventReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	defer r.locks.lock(req.NamespacedName)()
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := r.Get(ctx, req.NamespacedName, ev); err != nil {
		if apierrors.IsNotFound(err) {
			r.fresh.forget(req.NamespacedName)
			r.shared.engine.Discard(req.NamespacedName)
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
	if isFinished(ev) && !redeliveryRequested(ev) {
		// An outcome that arrives after its delivery ended (say, the endpoint was deleted meanwhile)
		// has nothing left to change. The event is about to leave the cache; its TTL and later
		// redelivery requests are the finished-events controller's.
		r.shared.engine.Discard(req.NamespacedName)
		r.fresh.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if wait, stale, err := r.checkEarlierLeader(ctx, ev); err != nil || stale {
		return ctrl.Result{RequeueAfter: wait}, client.IgnoreNotFound(err)
	}

	s := newEventScope(log.FromContext(ctx), ev, r.shared.engine.Outcomes(req.NamespacedName), r.shared.clock.Now())
	defer func() {
		if err := r.commit(ctx, s); err != nil {
			// Retried with backoff; a requeue time alongside an error would be ignored anyway.
			result, retErr = ctrl.Result{}, errors.Join(retErr, err)
		}
	}()
	if err := r.runPhases(ctx, s, true); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: s.requeue}, nil
}

// runPhases runs the phases in order and stops at the first error.
func (r *DocumentEventReconciler) runPhases(ctx context.Context, s *eventScope, start bool) error {
	for _, phase := range r.phases(start) {
		if err := phase.run(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", phase.name, err)
		}
	}
	return nil
}

// commit patches the status, then acknowledges the outcomes it recorded and emits their Events and
// metrics: none of that happens when the patch fails.
func (r *DocumentEventReconciler) commit(ctx context.Context, s *eventScope) error {
	if err := r.patchStatus(ctx, s); err != nil {
		if !objectTooLarge(err) {
			return err
		}
		// The API server refuses this status whenever it is retried, so it is not: the Event says why.
		// A refused event's own Events go out, since they explain it and nothing was sent.
		if s.tooLarge {
			r.emit(s)
		} else {
			r.Recorder.Eventf(s.ev, nil, corev1.EventTypeWarning, webhooksv1alpha1.EventTooLargeEvent, "Deliver",
				"the status cannot be written, the API server refuses the event as too large: %v", err)
		}
		return reconcile.TerminalError(err)
	}
	r.shared.engine.Ack(client.ObjectKeyFromObject(s.ev), s.recorded)
	r.emit(s)
	if s.ev.Status.Phase.IsFinished() && !s.base.Status.Phase.IsFinished() {
		// The event leaves the cache with this write; its TTL is the finished-events controller's.
		if remaining, ok := r.ttl(s.ev); ok {
			r.scheduleFinished(client.ObjectKeyFromObject(s.ev), max(remaining, 0))
		}
	}
	return nil
}

// earlierLeaderSlack widens the window of events that an earlier leader may have written by the skew
// allowed between our clock and the API server's creationTimestamp (which has second precision). An
// earlier leader stops writing before this one wins the lease, so only skew matters; a wider window
// would cost an extra read for every event of the first minutes of each term.
const earlierLeaderSlack = 2 * time.Second

// checkEarlierLeader reads, once per process, an unfinished event that existed before this process
// became leader straight from the API server, and reports the cache as stale until it has caught up with
// that version: an earlier leader may have recorded a delivery that this cache does not show yet.
func (r *DocumentEventReconciler) checkEarlierLeader(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool, error) {
	key := client.ObjectKeyFromObject(ev)
	if !ev.CreationTimestamp.Time.Before(r.shared.leaderSince().Add(earlierLeaderSlack)) || r.fresh.liveChecked(key) {
		return 0, false, nil
	}
	live := &webhooksv1alpha1.DocumentEvent{}
	if err := r.APIReader.Get(ctx, key, live); err != nil {
		return 0, false, fmt.Errorf("read DocumentEvent from the API server: %w", err)
	}
	r.fresh.readLive(key, live.ResourceVersion)
	wait, stale := r.fresh.stale(key, ev.ResourceVersion)
	return wait, stale, nil
}

// eventPhase is one named step of a DocumentEvent reconcile.
type eventPhase struct {
	name string
	run  func(ctx context.Context, s *eventScope) error
}

// phases lists the steps in order. Recording at shutdown runs them without starting attempts.
func (r *DocumentEventReconciler) phases(start bool) []eventPhase {
	phases := []eventPhase{
		{"list endpoints", r.listEndpoints},
		{"redeliver", r.redeliver},
		{"match endpoints", r.ensureTargets},
		{"record outcomes", r.recordOutcomes},
	}
	if start {
		phases = append(phases, eventPhase{"start due deliveries", r.startDue})
	}
	return append(phases, eventPhase{"summarize", r.summarize})
}

// patchStatus writes the status when it changed, and remembers the written version. observedGeneration
// only moves with a real change: while the first attempts are in flight it stays -1, so kstatus reads
// the event as in progress rather than current.
func (r *DocumentEventReconciler) patchStatus(ctx context.Context, s *eventScope) error {
	base, ev := s.base, s.ev
	if equality.Semantic.DeepEqual(base.Status, ev.Status) {
		return nil
	}
	ev.Status.ObservedGeneration = ev.Generation
	// Diff the status alone: the spec carries the whole payload and cannot change, so encoding it twice
	// per write would only cost CPU.
	patch, err := statusMergePatch(&base.Status, &ev.Status)
	if err != nil {
		return fmt.Errorf("compute DocumentEvent status patch: %w", err)
	}
	// Patched as metadata, the API server answers with the metadata alone, in protobuf, rather than the
	// whole event in JSON: the new resourceVersion is all the reconciler reads back.
	written := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name}}
	written.SetGroupVersionKind(webhooksv1alpha1.GroupVersion.WithKind("DocumentEvent"))
	if err := r.Status().Patch(ctx, written, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("patch DocumentEvent status: %w", err)
	}
	ev.ResourceVersion = written.ResourceVersion
	r.fresh.wrote(client.ObjectKeyFromObject(ev), ev.ResourceVersion)
	return nil
}

// objectTooLarge reports whether a write was refused for the size of the object: etcd's limit, which the
// API server passes on as HTTP 500 "etcdserver: request is too large" (no reason), or its own request
// limit (413).
func objectTooLarge(err error) bool {
	return apierrors.IsRequestEntityTooLargeError(err) ||
		(apierrors.IsInternalError(err) && strings.Contains(err.Error(), "request is too large"))
}

func isFinished(ev *webhooksv1alpha1.DocumentEvent) bool {
	return ev.Status.Phase.IsFinished() && ev.Status.ObservedGeneration == ev.Generation
}

// ttl returns how long until a finished event expires, if a TTL applies. It counts from the moment the
// event finished (status.completionTime).
func (r *DocumentEventReconciler) ttl(ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool) {
	ttl := r.DefaultTTLAfterFinished
	if ev.Spec.TTLSecondsAfterFinished != nil {
		ttl = time.Duration(*ev.Spec.TTLSecondsAfterFinished) * time.Second
	} else if ttl <= 0 {
		return 0, false
	}
	now := r.shared.clock.Now()
	finishedAt := now
	if ev.Status.CompletionTime != nil {
		finishedAt = ev.Status.CompletionTime.Time
	}
	return finishedAt.Add(ttl).Sub(now), true
}

// expire deletes a finished event once its TTL has passed. An event finished by an older version of the
// operator has no completionTime; it gets one now, so its TTL counts from here rather than from a time
// that may be long before it finished.
func (r *DocumentEventReconciler) expire(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent) (ctrl.Result, error) {
	remaining, ok := r.ttl(ev)
	if !ok {
		return ctrl.Result{}, nil
	}
	if ev.Status.CompletionTime == nil {
		patch := client.MergeFrom(ev.DeepCopy())
		now := metav1.NewMicroTime(r.shared.clock.Now())
		ev.Status.CompletionTime = &now
		if err := r.Status().Patch(ctx, ev, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.fresh.wrote(client.ObjectKeyFromObject(ev), ev.ResourceVersion)
		return ctrl.Result{RequeueAfter: max(remaining, time.Millisecond)}, nil
	}
	if remaining > 0 {
		return ctrl.Result{RequeueAfter: remaining}, nil
	}
	err := r.Delete(ctx, ev, client.Preconditions{UID: &ev.UID, ResourceVersion: &ev.ResourceVersion})
	if apierrors.IsConflict(err) {
		// Changed since we read it (a redelivery, say): look again.
		return ctrl.Result{RequeueAfter: staleRetry}, nil
	}
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("delete expired DocumentEvent: %w", err)
	}
	log.FromContext(ctx).V(1).Info("deleted finished DocumentEvent after its TTL", "phase", ev.Status.Phase)
	return ctrl.Result{}, nil
}

// recordOnShutdown writes the outcomes that finished while the manager was stopping, reading each event
// straight from the API server since the cache may have stopped. It takes each event's lock, so it
// never races a reconcile that is still running.
func (r *DocumentEventReconciler) recordOnShutdown(ctx context.Context, events []types.NamespacedName) {
	logger := log.FromContext(ctx).WithName("shutdown")
	for _, key := range events {
		if err := r.recordOne(ctx, r.APIReader, key); err != nil {
			logger.Error(err, "record delivery outcomes at shutdown", "event", key)
		}
	}
}

func (r *DocumentEventReconciler) recordOne(ctx context.Context, reader client.Reader, key types.NamespacedName) error {
	defer r.locks.lock(key)()
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := reader.Get(ctx, key, ev); err != nil {
		if apierrors.IsNotFound(err) {
			r.shared.engine.Discard(key)
			return nil
		}
		return err
	}
	s := newEventScope(log.FromContext(ctx), ev, r.shared.engine.Outcomes(key), r.shared.clock.Now())
	s.reader = reader
	if err := r.runPhases(ctx, s, false); err != nil {
		return err
	}
	return r.commit(ctx, s)
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
	shared.recordOnShutdown = r.recordOnShutdown
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &webhooksv1alpha1.DocumentEvent{},
		waitingOnIndex, waitingOnEndpoints); err != nil {
		return fmt.Errorf("index DocumentEvents by endpoint: %w", err)
	}
	watcher, err := client.NewWithWatch(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("create the client that watches finished DocumentEvents: %w", err)
	}
	finished := &finishedEventsSource{
		client: watcher,
		scope:  shared.scope,
		due:    r.finishedDue,
		log:    mgr.GetLogger().WithName("finished-documentevents"),
		retry:  5 * time.Second,
	}
	r.scheduleFinished = finished.schedule
	if err := ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(finished).
		Named("documentevent-finished").
		Complete(&finishedEventReconciler{events: r}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&webhooksv1alpha1.DocumentEvent{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&webhooksv1alpha1.WebhookEndpoint{},
			handler.EnqueueRequestsFromMapFunc(r.eventsWaitingOn),
			builder.WithPredicates(endpointUsabilityChanged())).
		// A delivery held for a Secret or for the private-egress label has no retry time. The endpoint's
		// Ready flip cannot be relied on to wake it: an endpoint controller that looks only after a Secret
		// came back never flips it. So these changes wake the waiting events themselves.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.eventsWaitingOnSecret)).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.eventsWaitingInNamespace),
			builder.WithPredicates(privateEgressLabelChanged())).
		WatchesRawSource(wakeSource(shared.engine.EventWakes)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrentReconciles}).
		WithLogConstructor(eventLogger(mgr.GetLogger())).
		Named("documentevent").
		Complete(r)
}

// eventLogger names the event in each reconcile's log lines with plain strings. The builder's default
// also adds a klog object reference and the controller's group and kind, which zap encodes on every
// reconcile, two or three times per delivered event.
func eventLogger(base logr.Logger) func(*reconcile.Request) logr.Logger {
	base = base.WithValues("controller", "documentevent")
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return base
		}
		return base.WithValues("namespace", req.Namespace, "name", req.Name)
	}
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
		requests = r.appendWaitingOn(ctx, requests, obj.GetNamespace(), key)
	}
	return requests
}

// eventsWaitingOnSecret maps a Secret change to the unfinished events of the endpoints that reference it.
// Events without targets yet are left out: a Secret changes no match.
func (r *DocumentEventReconciler) eventsWaitingOnSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	return r.eventsWaitingOnEach(ctx, listEndpointsUsingSecret(ctx, r.Client, secret))
}

// eventsWaitingInNamespace maps a change of the Namespace's private-egress label to the unfinished events
// of its endpoints.
func (r *DocumentEventReconciler) eventsWaitingInNamespace(ctx context.Context, ns client.Object) []reconcile.Request {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := r.List(ctx, endpoints, client.InNamespace(ns.GetName())); err != nil {
		log.FromContext(ctx).Error(err, "list WebhookEndpoints of Namespace", "namespace", ns.GetName())
		return nil
	}
	return r.eventsWaitingOnEach(ctx, endpoints)
}

// eventsWaitingOnEach returns the events waiting on any of the endpoints, each once: an event that waits
// on several of them needs one reconcile.
func (r *DocumentEventReconciler) eventsWaitingOnEach(ctx context.Context, endpoints *webhooksv1alpha1.WebhookEndpointList) []reconcile.Request {
	var requests []reconcile.Request
	for i := range endpoints.Items {
		requests = r.appendWaitingOn(ctx, requests, endpoints.Items[i].Namespace, endpoints.Items[i].Name)
	}
	seen := make(map[reconcile.Request]bool, len(requests))
	unique := requests[:0]
	for _, req := range requests {
		if !seen[req] {
			seen[req] = true
			unique = append(unique, req)
		}
	}
	return unique
}

// appendWaitingOn appends the events of the namespace that the waitingOnIndex lists under key.
func (r *DocumentEventReconciler) appendWaitingOn(ctx context.Context, requests []reconcile.Request, namespace, key string) []reconcile.Request {
	events := &webhooksv1alpha1.DocumentEventList{}
	if err := r.List(ctx, events, client.InNamespace(namespace), client.MatchingFields{waitingOnIndex: key}); err != nil {
		log.FromContext(ctx).Error(err, "list DocumentEvents waiting on endpoint", "endpoint", key)
		return requests
	}
	for i := range events.Items {
		requests = append(requests, reconcile.Request{NamespacedName: keyOf(&events.Items[i])})
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
