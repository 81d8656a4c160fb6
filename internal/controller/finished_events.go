package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// Finished events (Delivered or Failed) are not in the manager's cache: a team that keeps a month of
// delivery history would otherwise pay for it in operator memory and restart time. Two things still
// need them: their TTL, and a redelivery requested by annotation. A small controller of its own handles
// both, fed without keeping any event:
//
//   - an event that this process finishes is scheduled for its TTL by the reconciler that wrote the
//     finished phase (the controller's delaying queue holds only its key);
//   - at start, and whenever the watch below cannot resume, finishedEventsSource lists the finished
//     events page by page and schedules each TTL, so TTLs survive a restart without a cache;
//   - it then watches the finished events' metadata only (in protobuf, a few microseconds per event
//     where the whole event in JSON costs a hundred times more) and queues an event that carries a
//     redelivery request at once.
//
// The controller reads the event from the API server, since no cache has it, and either deletes it
// (expire) or applies the redelivery, which makes it Pending again: it then re-enters the manager's
// cache, where the DocumentEvent controller sends it.
//
// A second informer with a narrow transform was the alternative; it would still keep one small object
// per finished event, which is what this avoids.

// finishedPhases are listed and watched separately: a field selector cannot select two values, and
// "not Pending and not Delivering" would also see every new event, whose phase is still empty.
var finishedPhases = []webhooksv1alpha1.DocumentEventPhase{
	webhooksv1alpha1.DocumentEventDelivered, webhooksv1alpha1.DocumentEventFailed,
}

// finishedListPageSize bounds the memory a list takes: one page is decoded and released at a time.
const finishedListPageSize = 500

type finishedEventsSource struct {
	client client.WithWatch
	scope  WatchScope
	// due says whether, and in how long, a listed event needs the controller.
	due func(ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool)
	log logr.Logger
	// retry is how long to wait after a failed list or watch before listing again.
	retry time.Duration

	mu sync.Mutex
	// queue is the controller's queue once the source started; until then, scheduled keeps what the
	// reconciler scheduled.
	queue     workqueue.TypedRateLimitingInterface[reconcile.Request]
	scheduled []scheduledRequest
}

type scheduledRequest struct {
	key   types.NamespacedName
	after time.Duration
}

// schedule queues a finished event for the controller in after: the reconciler calls it for an event
// it has just finished, whose TTL then runs.
func (f *finishedEventsSource) schedule(key types.NamespacedName, after time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queue == nil {
		f.scheduled = append(f.scheduled, scheduledRequest{key, after})
		return
	}
	f.queue.AddAfter(reconcile.Request{NamespacedName: key}, after)
}

// Start runs one list-then-watch loop per finished phase and namespace until ctx ends.
func (f *finishedEventsSource) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	f.mu.Lock()
	f.queue = q
	for _, s := range f.scheduled {
		q.AddAfter(reconcile.Request{NamespacedName: s.key}, s.after)
	}
	f.scheduled = nil
	f.mu.Unlock()
	for _, phase := range finishedPhases {
		for _, ns := range f.scope.namespaces() {
			opts := f.scope.listOptions(ns, fields.OneTermEqualSelector(phaseField, string(phase)))
			go f.run(ctx, opts, q)
		}
	}
	return nil
}

func (f *finishedEventsSource) String() string { return "finished DocumentEvents" }

func (f *finishedEventsSource) run(ctx context.Context, opts []client.ListOption, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for {
		resourceVersion, err := f.list(ctx, opts, q)
		if err == nil {
			err = f.watch(ctx, opts, resourceVersion, q)
		}
		if ctx.Err() != nil {
			return
		}
		f.log.Error(err, "watch finished DocumentEvents; listing them again", "in", f.retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.retry):
		}
	}
}

// list queues every listed event that needs the controller, one page at a time, and returns the list's
// resource version to watch from.
func (f *finishedEventsSource) list(ctx context.Context, opts []client.ListOption, q workqueue.TypedRateLimitingInterface[reconcile.Request]) (string, error) {
	next := ""
	for {
		page := &webhooksv1alpha1.DocumentEventList{}
		if err := f.client.List(ctx, page, append(opts, client.Limit(finishedListPageSize), client.Continue(next))...); err != nil {
			return "", fmt.Errorf("list: %w", err)
		}
		for i := range page.Items {
			if after, ok := f.due(&page.Items[i]); ok {
				q.AddAfter(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&page.Items[i])}, after)
			}
		}
		if next = page.Continue; next == "" {
			return page.ResourceVersion, nil
		}
	}
}

// watch queues every finished event that carries a redelivery request, until the watch can no longer
// resume. Only metadata is watched: whether the request was acted on is in the status, which the
// controller reads.
func (f *finishedEventsSource) watch(ctx context.Context, opts []client.ListOption, resourceVersion string,
	q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	watcher := &toolscache.ListWatch{WatchFuncWithContext: func(ctx context.Context, raw metav1.ListOptions) (watch.Interface, error) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(webhooksv1alpha1.GroupVersion.WithKind("DocumentEventList"))
		return f.client.Watch(ctx, list, append(opts, &client.ListOptions{Raw: &raw})...)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, resourceVersion, watcher)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	for event := range w.ResultChan() {
		switch event.Type {
		case watch.Added, watch.Modified:
			if meta, ok := event.Object.(*metav1.PartialObjectMetadata); ok &&
				meta.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] != "" {
				q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(meta)})
			}
		case watch.Error:
			return fmt.Errorf("watch: %w", apierrors.FromObject(event.Object))
		}
	}
	return errors.New("watch: closed")
}

// finishedEventReconciler acts on finished events: it expires them after their TTL and applies a new
// redelivery request. It reads each event from the API server, since no cache has it.
type finishedEventReconciler struct {
	events *DocumentEventReconciler
}

func (f *finishedEventReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r := f.events
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, ev); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ev.DeletionTimestamp.IsZero() || !isFinished(ev) {
		// Not finished (any more): the DocumentEvent controller has it.
		return ctrl.Result{}, nil
	}
	if redeliveryRequested(ev) {
		// Applying the request makes the event Pending; the DocumentEvent controller sends it from
		// there, once it is back in the cache.
		return ctrl.Result{}, r.recordOne(ctx, r.APIReader, req.NamespacedName)
	}
	return r.expire(ctx, ev)
}

// finishedDue says when a listed finished event needs the finished-events controller: now for a new
// redelivery request, when it expires for a TTL; never for an event with neither.
func (r *DocumentEventReconciler) finishedDue(ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool) {
	if redeliveryRequested(ev) {
		return 0, true
	}
	if remaining, ok := r.ttl(ev); ok {
		return max(remaining, 0), true
	}
	return 0, false
}
