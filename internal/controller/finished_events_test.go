package controller

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// inManagerCache reports whether the running manager's cache holds the event.
func inManagerCache(ev *webhooksv1alpha1.DocumentEvent) func() bool {
	return func() bool {
		err := managerCache.Get(ctx, client.ObjectKeyFromObject(ev), &webhooksv1alpha1.DocumentEvent{})
		Expect(client.IgnoreNotFound(err)).To(Succeed())
		return err == nil
	}
}

var _ = Describe("Finished DocumentEvents", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("leave the manager's cache, which keeps only the events that still need work", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "orders", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.DocTypes = []string{"INVOICE"} })
		delivered := newEvent(ns, "delivered")
		waiting := newEvent(ns, "waiting", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus.DocType = ptr.To("RECEIPT") })

		Eventually(getEvent(delivered)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(inManagerCache(delivered)).Should(BeFalse())
		Eventually(getEvent(waiting)).Should(havePhase(webhooksv1alpha1.DocumentEventPending))
		Consistently(inManagerCache(waiting), time.Second).Should(BeTrue())
	})

	It("are redelivered on request although no cache holds them", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "orders", recv.URL)
		ev := newEvent(ns, "again")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(inManagerCache(ev)).Should(BeFalse())

		annotate(ev, webhooksv1alpha1.RedeliverRequestedAtAnnotation, "2026-12-01T10:00:00Z")
		Eventually(recv.received).Should(HaveLen(2))
		Eventually(getEvent(ev)).Should(And(havePhase(webhooksv1alpha1.DocumentEventDelivered),
			HaveField("Status.LastRedeliveryRequest", "2026-12-01T10:00:00Z")))
		Eventually(inManagerCache(ev)).Should(BeFalse())
		Consistently(recv.received, time.Second).Should(HaveLen(2))
	})

	It("are deleted after their TTL although no cache holds them", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "orders", recv.URL)
		ev := newEvent(ns, "expiring", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.TTLSecondsAfterFinished = ptr.To[int32](2) })
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(inManagerCache(ev)).Should(BeFalse())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(ev), &webhooksv1alpha1.DocumentEvent{})
		}).Should(Satisfy(apierrors.IsNotFound))
	})

	It("are scheduled by the source's list at start and by its metadata watch for redeliveries, within its shard", func() {
		r := &DocumentEventReconciler{DefaultTTLAfterFinished: time.Hour, shared: &Shared{clock: clock.RealClock{}}}
		finishedAt := time.Now().Add(-30 * time.Minute)
		listed := finishedEvent(ns, "listed", "a", webhooksv1alpha1.DocumentEventDelivered, finishedAt)
		finishedEvent(ns, "other-shard", "b", webhooksv1alpha1.DocumentEventFailed, finishedAt)

		queue := &recordingQueue{}
		watcher, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		source := &finishedEventsSource{client: watcher, due: r.finishedDue, log: log.FromContext(ctx), retry: time.Second,
			scope: WatchScope{Namespaces: []string{ns}, Labels: labels.SelectorFromSet(labels.Set{"shard": "a"})}}
		// The reconciler may finish an event before the controller's source started: kept until then.
		finishedEarly := types.NamespacedName{Namespace: ns, Name: "finished-before-start"}
		source.schedule(finishedEarly, 5*time.Minute)
		sourceCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		Expect(source.Start(sourceCtx, queue)).To(Succeed())
		Expect(queue.delayOf(finishedEarly)).To(Equal(5 * time.Minute))

		// Listed: due when its TTL runs out, 30 minutes after it finished an hour-long TTL ago.
		Eventually(queue.delayOf).WithArguments(client.ObjectKeyFromObject(listed)).
			Should(BeNumerically("~", 30*time.Minute, time.Minute))
		// Watched: an event finished after the list is the reconciler's to schedule, unless it asks
		// for a redelivery, which is queued at once.
		watched := finishedEvent(ns, "watched", "a", webhooksv1alpha1.DocumentEventFailed, finishedAt)
		Consistently(queue.delayOf, time.Second).WithArguments(client.ObjectKeyFromObject(watched)).Should(Equal(time.Duration(-1)))
		annotate(watched, webhooksv1alpha1.RedeliverRequestedAtAnnotation, "2026-12-01T11:00:00Z")
		Eventually(queue.delayOf).WithArguments(client.ObjectKeyFromObject(watched)).Should(BeZero())
		Expect(queue.keys()).NotTo(ContainElement(types.NamespacedName{Namespace: ns, Name: "other-shard"}))
	})
})

// finishedEvent creates an event in a shard and gives it a finished status, after the operator (which
// finds no endpoint for it) wrote its own, so that the two writes do not race.
func finishedEvent(ns, name, shard string, phase webhooksv1alpha1.DocumentEventPhase, finishedAt time.Time) *webhooksv1alpha1.DocumentEvent {
	ev := newEvent(ns, name, func(ev *webhooksv1alpha1.DocumentEvent) { ev.Labels = map[string]string{"shard": shard} })
	Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventPending))
	Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ev), ev)).To(Succeed())
	patch := client.MergeFrom(ev.DeepCopy())
	completed := metav1.NewMicroTime(finishedAt)
	ev.Status.Phase, ev.Status.CompletionTime, ev.Status.ObservedGeneration = phase, &completed, ev.Generation
	Expect(k8sClient.Status().Patch(ctx, ev, patch)).To(Succeed())
	return ev
}

// recordingQueue records when each key was queued for; the finished-events source only adds.
type recordingQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	mu    sync.Mutex
	delay map[types.NamespacedName]time.Duration
}

func (q *recordingQueue) Add(req reconcile.Request) { q.AddAfter(req, 0) }

func (q *recordingQueue) AddAfter(req reconcile.Request, after time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.delay == nil {
		q.delay = map[types.NamespacedName]time.Duration{}
	}
	q.delay[req.NamespacedName] = after
}

// delayOf returns what the key was last queued for; -1 when it was not queued.
func (q *recordingQueue) delayOf(key types.NamespacedName) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if after, ok := q.delay[key]; ok {
		return after
	}
	return -1
}

func (q *recordingQueue) keys() []types.NamespacedName {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Collect(maps.Keys(q.delay))
}
