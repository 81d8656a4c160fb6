package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
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
// need them: their TTL, and a redelivery requested by annotation. finishedEventsSource watches them
// without keeping them and hands each one to a small controller of its own:
//
//   - an event whose TTL applies is queued for the moment it expires (the controller's delaying queue
//     holds only its key);
//   - an event with a new redelivery request is queued at once.
//
// The controller reads the event from the API server, since no cache has it, and either deletes it
// (expire) or applies the redelivery, which makes it Pending again: it then re-enters the manager's
// cache, where the DocumentEvent controller sends it. At start, and whenever the watch cannot resume,
// the source lists the finished events page by page, so TTLs survive a restart without a cache.
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
	// due says whether, and in how long, an event needs the controller.
	due func(ev *webhooksv1alpha1.DocumentEvent) (time.Duration, bool)
	log logr.Logger
	// retry is how long to wait after a failed list or watch before listing again.
	retry time.Duration
}

// Start runs one list-then-watch loop per finished phase and namespace until ctx ends.
func (f *finishedEventsSource) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
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

// list hands every listed event to enqueue, one page at a time, and returns the list's resource
// version to watch from.
func (f *finishedEventsSource) list(ctx context.Context, opts []client.ListOption, q workqueue.TypedRateLimitingInterface[reconcile.Request]) (string, error) {
	next := ""
	for {
		page := &webhooksv1alpha1.DocumentEventList{}
		if err := f.client.List(ctx, page, append(opts, client.Limit(finishedListPageSize), client.Continue(next))...); err != nil {
			return "", fmt.Errorf("list: %w", err)
		}
		for i := range page.Items {
			f.enqueue(&page.Items[i], q)
		}
		if next = page.Continue; next == "" {
			return page.ResourceVersion, nil
		}
	}
}

// watch hands every added or changed event to enqueue until the watch can no longer resume.
func (f *finishedEventsSource) watch(ctx context.Context, opts []client.ListOption, resourceVersion string,
	q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	watcher := &toolscache.ListWatch{WatchFuncWithContext: func(ctx context.Context, raw metav1.ListOptions) (watch.Interface, error) {
		return f.client.Watch(ctx, &webhooksv1alpha1.DocumentEventList{}, append(opts, &client.ListOptions{Raw: &raw})...)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, resourceVersion, watcher)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	for event := range w.ResultChan() {
		switch event.Type {
		case watch.Added, watch.Modified:
			if ev, ok := event.Object.(*webhooksv1alpha1.DocumentEvent); ok {
				f.enqueue(ev, q)
			}
		case watch.Error:
			return fmt.Errorf("watch: %w", apierrors.FromObject(event.Object))
		}
	}
	return errors.New("watch: closed")
}

func (f *finishedEventsSource) enqueue(ev *webhooksv1alpha1.DocumentEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if after, ok := f.due(ev); ok {
		q.AddAfter(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(ev)}, after)
	}
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

// finishedDue says when a finished event needs the finished-events controller: now for a new
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
