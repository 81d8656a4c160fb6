package controller

import (
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/metrics"
)

func annotate(obj client.Object, key, value string) {
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[key] = value
	obj.SetAnnotations(annotations)
	Expect(k8sClient.Patch(ctx, obj, patch)).To(Succeed())
}

// kstatusOf computes the kstatus of an object as Flux, Argo CD and kubectl's kstatus-based tools do.
func kstatusOf(obj client.Object) func(Gomega) status.Status {
	return func(g Gomega) status.Status {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		g.Expect(err).NotTo(HaveOccurred())
		res, err := status.Compute(&unstructured.Unstructured{Object: raw})
		g.Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
}

func metricValue(name string, labels map[string]string) float64 {
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// metricChange reads a metric now and returns a function that tells how much it has changed since: the
// registry is shared by the whole suite, so a spec asserts only what its own objects did.
func metricChange(name string, labels map[string]string) func() float64 {
	before := metricValue(name, labels)
	return func() float64 { return metricValue(name, labels) - before }
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var _ = Describe("Actions, kstatus and metrics", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("sends one signed test webhook per annotation value and records it in status.lastTest", func() {
		recv := newReceiver(always(200))
		newSecret(ns, "signing", map[string]string{"signingSecret": "test-key"})
		ep := newEndpoint(ns, "tested", recv.URL, withSecret("signing"))
		testsBefore := metricValue(metrics.TestDeliveriesTotal, map[string]string{"result": "success"})

		annotate(ep, webhooksv1alpha1.TestRequestedAtAnnotation, "first")
		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastTest.RequestedAt", "first"),
			HaveField("Status.LastTest.Success", true),
			HaveField("Status.LastTest.StatusCode", int32(200))))
		req := recv.received()[0]
		Expect(req.header.Get("X-Webhook-Test")).To(Equal("true"))
		Expect(req.header.Get("X-Webhook-Signature")).To(Equal(
			independentSignature("test-key", req.header.Get("X-Webhook-Timestamp"), req.body)))
		var payload map[string]any
		Expect(json.Unmarshal(req.body, &payload)).To(Succeed())
		Expect(payload["documentId"]).To(HavePrefix("test_"))
		Expect(payload["event"]).To(Equal("document.ready"))

		By("touching the endpoint without a new value")
		annotate(ep, "unrelated", "x")
		Consistently(func() int { return len(recv.received()) }, 700*time.Millisecond).Should(Equal(1))

		By("a new value")
		annotate(ep, webhooksv1alpha1.TestRequestedAtAnnotation, "second")
		Eventually(getEndpoint(ep)).Should(HaveField("Status.LastTest.RequestedAt", "second"))
		Expect(recv.received()).To(HaveLen(2))
		Expect(metricValue(metrics.TestDeliveriesTotal, map[string]string{"result": "success"})).To(Equal(testsBefore + 2))
	})

	It("reports a test that cannot be sent instead of sending it unsigned", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "unsigned", recv.URL, withSecret("missing"))
		annotate(ep, webhooksv1alpha1.TestRequestedAtAnnotation, "now")
		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastTest.RequestedAt", "now"),
			HaveField("Status.LastTest.Success", false),
			HaveField("Status.LastTest.Error", ContainSubstring("SecretNotFound"))))
		Expect(recv.received()).To(BeEmpty())
	})

	It("redelivers an event once per annotation value, with the same X-Webhook-Id and fresh attempts", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "again", recv.URL)
		ev := newEvent(ns, "redelivered")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		annotate(ev, webhooksv1alpha1.RedeliverRequestedAtAnnotation, "r1")
		Eventually(func() int { return len(recv.received()) }).Should(Equal(2))
		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventDelivered),
			HaveField("Status.LastRedeliveryRequest", "r1")))
		reqs := recv.received()
		Expect(reqs[1].header.Get("X-Webhook-Id")).To(Equal(reqs[0].header.Get("X-Webhook-Id")))
		Expect(getEvent(ev)(Default).GetDelivery("again").Attempts).To(Equal(int32(1)))

		annotate(ev, "unrelated", "x")
		Consistently(func() int { return len(recv.received()) }, 700*time.Millisecond).Should(Equal(2))
	})

	It("redelivers only the failed deliveries with redeliver-scope: failed, and finds failed events by field selector", func() {
		ok := newReceiver(always(200))
		flaky := newReceiver(func(n int) int {
			if n == 0 {
				return 500
			}
			return 200
		})
		newEndpoint(ns, "ok", ok.URL)
		newEndpoint(ns, "flaky", flaky.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Retry = fastRetry(1) })
		ev := newEvent(ns, "half-failed")
		other := newEvent(ns, "unrelated-success", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.EndpointSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"none": "none"}}
		})
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventFailed))
		Eventually(getEvent(other)).Should(havePhase(webhooksv1alpha1.DocumentEventPending))

		failed := &webhooksv1alpha1.DocumentEventList{}
		Expect(k8sClient.List(ctx, failed, client.InNamespace(ns),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("status.phase", "Failed")})).To(Succeed())
		Expect(failed.Items).To(HaveLen(1))
		Expect(failed.Items[0].Name).To(Equal("half-failed"))

		annotate(ev, webhooksv1alpha1.RedeliverScopeAnnotation, webhooksv1alpha1.RedeliverScopeFailed)
		annotate(ev, webhooksv1alpha1.RedeliverRequestedAtAnnotation, "retry-failed")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(ok.received()).To(HaveLen(1), "the delivered endpoint is not sent again")
		Expect(flaky.received()).To(HaveLen(2))
	})

	It("exposes kstatus-compatible conditions on both kinds", func() {
		recv := newReceiver(always(200))
		broken := newReceiver(always(500))
		ready := newEndpoint(ns, "ready", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"to": "ready"}
		})
		stalled := newEndpoint(ns, "stalled", recv.URL, withSecret("absent"), func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"to": "stalled"}
		})
		newEndpoint(ns, "broken", broken.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"to": "broken"}
			ep.Spec.Retry = fastRetry(1)
		})
		to := func(target string) func(*webhooksv1alpha1.DocumentEvent) {
			return func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.EndpointSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"to": target}}
			}
		}
		delivered := newEvent(ns, "delivered", to("ready"))
		waiting := newEvent(ns, "waiting", to("stalled"))
		failed := newEvent(ns, "failed", to("broken"))

		Eventually(kstatusOf(ready)).Should(Equal(status.CurrentStatus))
		Eventually(kstatusOf(stalled)).Should(Equal(status.FailedStatus))
		Eventually(kstatusOf(delivered)).Should(Equal(status.CurrentStatus))
		Eventually(kstatusOf(waiting)).Should(Equal(status.InProgressStatus))
		Eventually(kstatusOf(failed)).Should(Equal(status.FailedStatus))
		Expect(getEvent(delivered)(Default)).To(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue,
			webhooksv1alpha1.DeliverySucceededReason))
	})

	It("counts attempts and reports the backlog in Prometheus metrics", func() {
		recv := newReceiver(func(n int) int {
			if n == 0 {
				return 503
			}
			return 200
		})
		newEndpoint(ns, "measured", recv.URL)
		succeeded := metricChange(metrics.DeliveriesTotal, map[string]string{"result": "success", "code_class": "2xx"})
		failed := metricChange(metrics.DeliveriesTotal, map[string]string{"result": "failure", "code_class": "5xx"})
		finished := metricChange(metrics.DeliveryAttempts, map[string]string{"result": "delivered"})
		ev := newEvent(ns, "measured")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(succeeded()).To(Equal(1.0))
		Expect(failed()).To(Equal(1.0))
		Eventually(finished).Should(Equal(1.0), "one delivery finished, after its two attempts")

		By("creating events that no endpoint matches yet")
		pending := metricChange(metrics.PendingDeliveries, nil)
		cachedEvents := metricChange(metrics.CachedObjects, map[string]string{"kind": "DocumentEvent"})
		late := map[string]string{"backlog": "late"}
		waiting := make([]*webhooksv1alpha1.DocumentEvent, 0, 3)
		for i := range 3 {
			waiting = append(waiting, newEvent(ns, fmt.Sprintf("backlog-%d", i), func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.EndpointSelector = &metav1.LabelSelector{MatchLabels: late}
			}))
		}
		Eventually(pending).Should(Equal(3.0))
		Eventually(cachedEvents).Should(Equal(3.0))
		// The oldest backlog is at least as old as this spec's first waiting event, read before the scrape.
		Eventually(func(g Gomega) {
			waited := time.Since(waiting[0].CreationTimestamp.Time).Seconds()
			g.Expect(waited).To(BeNumerically(">", 1))
			g.Expect(metricValue(metrics.OldestPendingAgeSeconds, nil)).To(BeNumerically(">=", waited))
		}).Should(Succeed())

		By("adding the endpoint they wait for")
		newEndpoint(ns, "late", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Labels = late })
		for _, ev := range waiting {
			Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Eventually(pending).Should(BeZero())
		Eventually(cachedEvents).Should(BeZero(), "delivered events leave the manager's cache")
	})
})
