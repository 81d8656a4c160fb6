package controller

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// arrivalLog is a receiver that notes when each request arrived and answers with answer(n), n counting
// from 0, plus the headers it sets.
type arrivalLog struct {
	mu sync.Mutex
	at []time.Time
}

func newArrivalReceiver(answer func(n int, h http.Header) int) (*arrivalLog, string) {
	log := &arrivalLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		log.mu.Lock()
		n := len(log.at)
		log.at = append(log.at, time.Now())
		log.mu.Unlock()
		w.WriteHeader(answer(n, w.Header()))
	}))
	DeferCleanup(srv.Close)
	return log, srv.URL
}

func (l *arrivalLog) arrivals() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at)
}

func withRateLimit(perSecond, burst int32) func(*webhooksv1alpha1.WebhookEndpoint) {
	return func(ep *webhooksv1alpha1.WebhookEndpoint) {
		ep.Spec.RateLimit = &webhooksv1alpha1.RateLimit{RequestsPerSecond: perSecond, Burst: burst}
	}
}

// expectDeliveredOnFirstAttempt waits until each event is Delivered and checks that it took one
// attempt: waiting for the rate limit or a pause is not an attempt.
func expectDeliveredOnFirstAttempt(events []*webhooksv1alpha1.DocumentEvent, endpoint string, within time.Duration) {
	for _, ev := range events {
		Eventually(getEvent(ev), within).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(getEvent(ev)(Default).GetDelivery(endpoint).Attempts).To(Equal(int32(1)), ev.Name)
	}
}

var _ = Describe("Per-endpoint rate limits", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("sends no more than the rate limit plus the burst in any second, and delivers every event", func() {
		const perSecond, burst, events = 2, 2, 10
		log, url := newArrivalReceiver(func(int, http.Header) int { return http.StatusOK })
		newEndpoint(ns, "limited", url, withRateLimit(perSecond, burst))
		created := make([]*webhooksv1alpha1.DocumentEvent, events)
		for i := range created {
			created[i] = newEvent(ns, fmt.Sprintf("burst-%d", i))
		}
		expectDeliveredOnFirstAttempt(created, "limited", 20*time.Second)

		got := log.arrivals()
		Expect(got).To(HaveLen(events))
		for i, from := range got {
			inSecond := 0
			for _, at := range got[i:] {
				if at.Sub(from) < time.Second {
					inSecond++
				}
			}
			Expect(inSecond).To(BeNumerically("<=", perSecond+burst), "requests in the second after %s", from)
		}
		// The limit bites: after the burst, one request per 1/perSecond.
		Expect(got[events-1].Sub(got[0])).To(BeNumerically(">=", (events-burst)*time.Second/perSecond-100*time.Millisecond))
	})

	It("pauses the endpoint's other deliveries when the receiver answers 429 with Retry-After", func() {
		log, url := newArrivalReceiver(func(n int, h http.Header) int {
			if n == 0 {
				h.Set("Retry-After", "2")
				return http.StatusTooManyRequests
			}
			return http.StatusOK
		})
		newEndpoint(ns, "throttling", url)
		first := newEvent(ns, "throttled")
		Eventually(func() int { return len(log.arrivals()) }).Should(Equal(1))
		others := []*webhooksv1alpha1.DocumentEvent{newEvent(ns, "after-1"), newEvent(ns, "after-2")}
		expectDeliveredOnFirstAttempt(others, "throttling", 10*time.Second)
		Eventually(getEvent(first), 10*time.Second).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		got := log.arrivals()
		Expect(got).To(HaveLen(4), "the 429, its retry and the two other events")
		for _, at := range got[1:] {
			Expect(at.Sub(got[0])).To(BeNumerically(">=", 2*time.Second), "a request within the 2s Retry-After")
		}
	})

	DescribeTable("rejects an invalid rateLimit with a clear message",
		func(rateLimit webhooksv1alpha1.RateLimit, message string) {
			err := k8sClient.Create(ctx, endpointObject(ns, "bad", "https://example.com/hook",
				withRateLimit(rateLimit.RequestsPerSecond, rateLimit.Burst)))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no requests per second", webhooksv1alpha1.RateLimit{},
			"spec.rateLimit.requestsPerSecond: Invalid value: 0: spec.rateLimit.requestsPerSecond in body should be greater than or equal to 1"),
		Entry("a negative rate", webhooksv1alpha1.RateLimit{RequestsPerSecond: -1},
			"spec.rateLimit.requestsPerSecond: Invalid value: -1: spec.rateLimit.requestsPerSecond in body should be greater than or equal to 1"),
		Entry("a rate over 10000 per second", webhooksv1alpha1.RateLimit{RequestsPerSecond: 10001},
			"spec.rateLimit.requestsPerSecond: Invalid value: 10001: spec.rateLimit.requestsPerSecond in body should be less than or equal to 10000"),
		Entry("a negative burst", webhooksv1alpha1.RateLimit{RequestsPerSecond: 1, Burst: -1},
			"spec.rateLimit.burst: Invalid value: -1: spec.rateLimit.burst in body should be greater than or equal to 1"),
		Entry("a burst over 10000", webhooksv1alpha1.RateLimit{RequestsPerSecond: 1, Burst: 10001},
			"spec.rateLimit.burst: Invalid value: 10001: spec.rateLimit.burst in body should be less than or equal to 10000"),
	)
})
