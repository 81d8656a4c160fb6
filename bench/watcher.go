package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// watcher follows the DocumentEvents of one namespace (all when ns is empty) with a watch (polling List
// would load the API server that is being measured) and records when each event was seen Delivered.
type watcher struct {
	c  client.WithWatch
	ns string
	// labels, when set, restricts the watch to the events that carry them.
	labels client.MatchingLabels

	mu sync.Mutex
	// per event, by namespace/name: whether it is Delivered and how many of its deliveries are.
	events map[string]eventState
	// deliveredAt[k] is when the (k+1)-th event was seen Delivered; deliveriesAt likewise for deliveries.
	deliveredAt  []time.Time
	deliveriesAt []time.Time
	delivered    int
	deliveries   int
	err          error

	// observe, when set, sees every added or modified event with the time it was seen (under mu).
	observe func(ev *webhooksv1alpha1.DocumentEvent, at time.Time)
	// outlasting keeps the watch going through an API server outage: a failed list is retried until the
	// context ends instead of failing the watcher.
	outlasting bool

	cancel context.CancelFunc
	done   chan struct{}
}

type eventState struct {
	delivered  bool
	deliveries int
}

func (h *harness) watch(ctx context.Context, ns string) (*watcher, error) {
	return h.startWatch(ctx, &watcher{ns: ns})
}

// startWatch lists and then watches the events of w.ns; w may carry observe and outlasting.
func (h *harness) startWatch(ctx context.Context, w *watcher) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w.c, w.events, w.cancel, w.done = h.c, map[string]eventState{}, cancel, make(chan struct{})
	rv, err := w.list(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	go w.loop(ctx, rv)
	return w, nil
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) list(ctx context.Context) (string, error) {
	list := &webhooksv1alpha1.DocumentEventList{}
	if err := retry(ctx, func() error { return w.c.List(ctx, list, w.scope()...) }); err != nil {
		return "", fmt.Errorf("list DocumentEvents in %s: %w", w.ns, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for i := range list.Items {
		w.setLocked(&list.Items[i])
		seen[eventKey(&list.Items[i])] = true
	}
	for key := range w.events {
		if !seen[key] {
			w.removeLocked(key)
		}
	}
	return list.ResourceVersion, nil
}

// scope selects the watched events, for List and Watch alike.
func (w *watcher) scope() []client.ListOption {
	opts := []client.ListOption{client.InNamespace(w.ns)}
	if len(w.labels) > 0 {
		opts = append(opts, w.labels)
	}
	return opts
}

func eventKey(ev *webhooksv1alpha1.DocumentEvent) string { return ev.Namespace + "/" + ev.Name }

// loop watches from rv, and lists again whenever the watch ends or expires.
func (w *watcher) loop(ctx context.Context, rv string) {
	defer close(w.done)
	for ctx.Err() == nil {
		wi, err := w.c.Watch(ctx, &webhooksv1alpha1.DocumentEventList{}, append(w.scope(), &client.ListOptions{
			Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true},
		})...)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
			var ok bool
			if rv, ok = w.relist(ctx); !ok {
				return
			}
			continue
		}
		rv = w.consume(ctx, wi, rv)
		wi.Stop()
		if rv == "" && ctx.Err() == nil {
			var ok bool
			if rv, ok = w.relist(ctx); !ok {
				return
			}
		}
	}
}

// relist lists again; it reports false when the watcher ends (its context ended, or the list failed and
// the watcher does not outlast outages).
func (w *watcher) relist(ctx context.Context) (string, bool) {
	for {
		rv, err := w.list(ctx)
		switch {
		case err == nil:
			return rv, true
		case ctx.Err() != nil:
			return "", false
		case !w.outlasting:
			w.fail(err)
			return "", false
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// consume applies watch events until the watch ends. It returns the resourceVersion to resume from, or
// "" when the watch expired and a new list is needed.
func (w *watcher) consume(ctx context.Context, wi watch.Interface, rv string) string {
	for {
		select {
		case <-ctx.Done():
			return rv
		case e, ok := <-wi.ResultChan():
			if !ok {
				return rv
			}
			switch e.Type {
			case watch.Error:
				// Most often 410 Gone: the resourceVersion expired. List again.
				return ""
			case watch.Bookmark:
				if ev, ok := e.Object.(*webhooksv1alpha1.DocumentEvent); ok {
					rv = ev.ResourceVersion
				}
			case watch.Added, watch.Modified, watch.Deleted:
				ev, ok := e.Object.(*webhooksv1alpha1.DocumentEvent)
				if !ok {
					continue
				}
				rv = ev.ResourceVersion
				w.mu.Lock()
				if e.Type == watch.Deleted {
					w.removeLocked(eventKey(ev))
				} else {
					w.setLocked(ev)
				}
				w.mu.Unlock()
			}
		}
	}
}

func (w *watcher) setLocked(ev *webhooksv1alpha1.DocumentEvent) {
	now := time.Now()
	if w.observe != nil {
		w.observe(ev, now)
	}
	next := eventState{delivered: ev.Status.Phase == webhooksv1alpha1.DocumentEventDelivered}
	for _, d := range ev.Status.Deliveries {
		if d.Phase == webhooksv1alpha1.DeliveryDelivered {
			next.deliveries++
		}
	}
	key := eventKey(ev)
	prev := w.events[key]
	w.events[key] = next
	if next.delivered && !prev.delivered {
		w.delivered++
		if w.delivered > len(w.deliveredAt) {
			w.deliveredAt = append(w.deliveredAt, now)
		}
	} else if !next.delivered && prev.delivered {
		w.delivered--
	}
	w.deliveries += next.deliveries - prev.deliveries
	for len(w.deliveriesAt) < w.deliveries {
		w.deliveriesAt = append(w.deliveriesAt, now)
	}
}

func (w *watcher) removeLocked(key string) {
	prev, ok := w.events[key]
	if !ok {
		return
	}
	delete(w.events, key)
	if prev.delivered {
		w.delivered--
	}
	w.deliveries -= prev.deliveries
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// waitDelivered waits until n events are Delivered and returns when the n-th was seen Delivered.
func (w *watcher) waitDelivered(ctx context.Context, n int) (time.Time, error) {
	return w.waitFor(ctx, func() (time.Time, bool) {
		if w.delivered >= n && len(w.deliveredAt) >= n {
			return w.deliveredAt[n-1], true
		}
		return time.Time{}, false
	}, func() string { return fmt.Sprintf("%d of %d events Delivered", w.delivered, n) })
}

// waitDeliveries waits until n deliveries are Delivered and returns when the n-th was seen.
func (w *watcher) waitDeliveries(ctx context.Context, n int) (time.Time, error) {
	return w.waitFor(ctx, func() (time.Time, bool) {
		if w.deliveries >= n && len(w.deliveriesAt) >= n {
			return w.deliveriesAt[n-1], true
		}
		return time.Time{}, false
	}, func() string { return fmt.Sprintf("%d of %d deliveries Delivered", w.deliveries, n) })
}

func (w *watcher) waitFor(ctx context.Context, done func() (time.Time, bool), progress func() string) (time.Time, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		at, ok := done()
		err := w.err
		msg := progress()
		w.mu.Unlock()
		if ok {
			return at, nil
		}
		if err != nil {
			return time.Time{}, err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("in namespace %s: %s: %w", w.ns, msg, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
