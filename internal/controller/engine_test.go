package controller

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// concurrencyReceiver answers 200 after delay and records the highest number of requests it served at once.
type concurrencyReceiver struct {
	*httptest.Server
	current, peak, total atomic.Int32
}

func newConcurrencyReceiver(delay time.Duration) *concurrencyReceiver {
	r := &concurrencyReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		now := r.current.Add(1)
		for {
			peak := r.peak.Load()
			if now <= peak || r.peak.CompareAndSwap(peak, now) {
				break
			}
		}
		time.Sleep(delay)
		r.current.Add(-1)
		r.total.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	DeferCleanup(r.Close)
	return r
}

var _ = Describe("Delivery engine", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("keeps a hanging endpoint from delaying a healthy one", func() {
		hanging := newReceiver(always(-1))
		healthy := newReceiver(always(200))
		newEndpoint(ns, "hanging", hanging.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"target": "hanging"}
			ep.Spec.Timeout = &metav1.Duration{Duration: 30 * time.Second}
			ep.Spec.MaxInFlight = 2
		})
		newEndpoint(ns, "healthy", healthy.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"target": "healthy"}
		})
		to := func(target string) func(*webhooksv1alpha1.DocumentEvent) {
			return func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.EndpointSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"target": target}}
			}
		}
		// More events for the hanging endpoint than there are reconcile workers (8) and than its own
		// in-flight bound (2): neither may hold up the healthy endpoint's events.
		for i := range 12 {
			newEvent(ns, "stuck-"+string(rune('a'+i)), to("hanging"))
		}
		fine := make([]*webhooksv1alpha1.DocumentEvent, 0, 5)
		for i := range 5 {
			fine = append(fine, newEvent(ns, "fine-"+string(rune('a'+i)), to("healthy")))
		}
		// The hanging endpoint's timeout is 30s; the healthy events must not wait for it.
		for _, ev := range fine {
			Eventually(getEvent(ev), 5*time.Second).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Expect(hanging.received()).To(HaveLen(2), "the hanging endpoint never has more than maxInFlight attempts open")
	})

	It("never exceeds an endpoint's maxInFlight and still delivers every event", func() {
		recv := newConcurrencyReceiver(100 * time.Millisecond)
		newEndpoint(ns, "narrow", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.MaxInFlight = 3 })
		events := make([]*webhooksv1alpha1.DocumentEvent, 0, 15)
		for i := range 15 {
			events = append(events, newEvent(ns, "burst-"+string(rune('a'+i))))
		}
		for _, ev := range events {
			Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Expect(recv.total.Load()).To(Equal(int32(15)))
		Expect(recv.peak.Load()).To(And(BeNumerically("<=", 3), BeNumerically(">=", 2)))
	})

	It("honours Retry-After on 429 and 503, capped at maxInterval", func() {
		var mu sync.Mutex
		var arrivals []time.Time
		calls := atomic.Int32{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
			switch calls.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
			case 2:
				w.Header().Set("Retry-After", "3600")
				w.WriteHeader(http.StatusServiceUnavailable)
			default:
				w.WriteHeader(http.StatusOK)
			}
		}))
		DeferCleanup(srv.Close)
		newEndpoint(ns, "throttling", srv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
				MaxAttempts:     5,
				InitialInterval: &metav1.Duration{Duration: 10 * time.Millisecond},
				MaxInterval:     &metav1.Duration{Duration: 1500 * time.Millisecond},
			}
		})
		ev := newEvent(ns, "throttled")

		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("LastStatusCode", int32(429)),
			HaveField("NextAttemptTime", Not(BeNil()))))))
		d := getEvent(ev)(Default).GetDelivery("throttling")
		Expect(d.NextAttemptTime.Sub(d.LastAttemptTime.Time)).To(BeNumerically(">=", time.Second),
			"Retry-After: 1 beats the 10ms backoff")

		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		mu.Lock()
		defer mu.Unlock()
		Expect(arrivals).To(HaveLen(3))
		Expect(arrivals[1].Sub(arrivals[0])).To(BeNumerically(">=", 950*time.Millisecond))
		// Retry-After: 3600 is capped at maxInterval (1.5s).
		Expect(arrivals[2].Sub(arrivals[1])).To(And(
			BeNumerically(">=", 1400*time.Millisecond), BeNumerically("<", 5*time.Second)))
	})

	It("opens the circuit after consecutive failures, holds deliveries, and closes it on a successful probe", func() {
		recv := newReceiver(func(n int) int {
			if n < 3 {
				return 500
			}
			return 200
		})
		ep := newEndpoint(ns, "breaker", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
				MaxAttempts:     20,
				InitialInterval: &metav1.Duration{Duration: 10 * time.Millisecond},
				MaxInterval:     &metav1.Duration{Duration: 20 * time.Millisecond},
			}
			ep.Spec.CircuitBreaker = &webhooksv1alpha1.CircuitBreakerPolicy{
				FailureThreshold: 3,
				Cooldown:         &metav1.Duration{Duration: 2 * time.Second},
			}
		})
		first := newEvent(ns, "trips-breaker")

		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.CircuitOpenReason))
		Eventually(eventNotes(ns, ep.Name, webhooksv1alpha1.CircuitOpenedEvent)).Should(HaveLen(1))
		second := newEvent(ns, "arrives-while-open")
		// While waiting, a delivery that failed keeps the receiver's error, one that never went shows the
		// circuit, and both tell when the next probe is due.
		nextProbe := HaveField("NextAttemptTime.Time", BeTemporally(">", time.Now()))
		Eventually(getEvent(first)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("Reason", webhooksv1alpha1.CircuitOpenReason),
			HaveField("LastError", HavePrefix("HTTP 500")), nextProbe))))
		Eventually(getEvent(second)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("Reason", webhooksv1alpha1.CircuitOpenReason),
			HaveField("LastError", HavePrefix("CircuitOpen")), nextProbe))))
		// While open, nothing is sent: the cooldown (2s) is much longer than the retry interval (20ms).
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(Equal(3))

		for _, ev := range []*webhooksv1alpha1.DocumentEvent{first, second} {
			Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Eventually(getEndpoint(ep)).Should(And(
			haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue, webhooksv1alpha1.ReadyReason),
			HaveField("Status.ConsecutiveFailures", int32(0))))
		Eventually(eventNotes(ns, ep.Name, webhooksv1alpha1.CircuitClosedEvent)).Should(HaveLen(1))
		Expect(recv.received()).To(HaveLen(5), "3 failures, 1 probe, 1 more delivery")
	})

	It("deletes finished events after ttlSecondsAfterFinished and keeps the others", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "ttl", recv.URL)
		expiring := newEvent(ns, "expiring", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.TTLSecondsAfterFinished = ptr.To[int32](1)
		})
		kept := newEvent(ns, "kept")

		Eventually(getEvent(kept)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(expiring), &webhooksv1alpha1.DocumentEvent{})
		}).Should(Satisfy(apierrors.IsNotFound))
		Consistently(getEvent(kept), 2*time.Second).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(recv.received()).To(HaveLen(2))
	})
})
