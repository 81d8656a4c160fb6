package controller

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// spansOf returns the ended spans of one delivery.
func spansOf(deliveryID string) func() []sdktrace.ReadOnlySpan {
	return func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, span := range spans.Ended() {
			for _, kv := range span.Attributes() {
				if kv.Key == "webhook.delivery_id" && kv.Value.AsString() == deliveryID {
					out = append(out, span)
				}
			}
		}
		return out
	}
}

func attributes(span sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range span.Attributes() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

var _ = Describe("Tracing", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("traces each attempt under the pipeline's span and sends the receiver the attempt's traceparent", func() {
		const secret = "tracing-secret-value"
		newSecret(ns, "signing", map[string]string{"signingSecret": secret})
		recv := newReceiver(func(n int) int {
			if n == 0 {
				return 503
			}
			return 200
		})
		newEndpoint(ns, "traced", recv.URL, withSecret("signing"))
		ev := newEvent(ns, "traced", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Annotations = map[string]string{
				webhooksv1alpha1.TraceParentAnnotation: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				webhooksv1alpha1.TraceStateAnnotation:  "vendor=abc",
			}
		})
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		deliveryID := getEvent(ev)(Default).Status.Deliveries[0].DeliveryID

		requests := recv.received()
		Expect(requests).To(HaveLen(2))
		sentSpans := make([]string, 0, len(requests))
		for _, req := range requests {
			parts := strings.Split(req.header.Get("traceparent"), "-")
			Expect(parts).To(HaveLen(4))
			Expect(parts[1]).To(Equal("4bf92f3577b34da6a3ce929d0e0e4736"), "the pipeline's trace")
			Expect(req.header.Get("tracestate")).To(Equal("vendor=abc"))
			sentSpans = append(sentSpans, parts[2])
		}
		Expect(sentSpans[0]).NotTo(Equal(sentSpans[1]), "each attempt has its own span")

		Eventually(spansOf(deliveryID)).Should(HaveLen(3))
		traced := spansOf(deliveryID)()
		var attempts []sdktrace.ReadOnlySpan
		var delivery sdktrace.ReadOnlySpan
		for _, span := range traced {
			if span.Name() == "webhook delivery" {
				delivery = span
			} else {
				attempts = append(attempts, span)
			}
		}
		Expect(delivery).NotTo(BeNil())
		Expect(delivery.Parent().SpanID().String()).To(Equal("00f067aa0ba902b7"), "under the pipeline's span")
		Expect(attributes(delivery)).To(HaveKeyWithValue("webhook.phase", "Delivered"))
		Expect(attempts).To(HaveLen(2))
		for i, attempt := range attempts {
			Expect(attempt.SpanContext().TraceID().String()).To(Equal("4bf92f3577b34da6a3ce929d0e0e4736"))
			Expect(attempt.Parent().SpanID()).To(Equal(delivery.SpanContext().SpanID()))
			Expect(attempt.SpanContext().SpanID().String()).To(Equal(sentSpans[i]), "the span the receiver was told")
		}
		Expect(attributes(attempts[0])).To(And(
			HaveKeyWithValue("webhook.attempt", "1"), HaveKeyWithValue("http.response.status_code", "503"),
			HaveKeyWithValue("webhook.outcome", "retrying"), HaveKeyWithValue("error.type", "http_status"),
			HaveKey("webhook.retry_in_seconds"), HaveKeyWithValue("webhook.endpoint", "traced")))
		Expect(attributes(attempts[1])).To(And(
			HaveKeyWithValue("webhook.attempt", "2"), HaveKeyWithValue("http.response.status_code", "200"),
			HaveKeyWithValue("webhook.outcome", "delivered")))

		// Nothing secret in any span: not the signing secret, not a signature, not the payload.
		signatures := []string{requests[0].header.Get(signature.HeaderSignature), requests[1].header.Get(signature.HeaderSignature)}
		for _, span := range traced {
			for _, kv := range span.Attributes() {
				value := kv.Value.String()
				Expect(value).NotTo(ContainSubstring(secret))
				Expect(signatures).NotTo(ContainElement(value))
				Expect(value).NotTo(ContainSubstring(ev.Spec.DocumentID))
			}
		}
	})

	It("gives each redelivery round a delivery span of its own, with that round's attempts under it", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "redelivered", recv.URL)
		ev := newEvent(ns, "redelivered")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		deliveryID := getEvent(ev)(Default).Status.Deliveries[0].DeliveryID
		Eventually(spansOf(deliveryID)).Should(HaveLen(2))

		annotate(ev, webhooksv1alpha1.RedeliverRequestedAtAnnotation, "round-2")
		Eventually(spansOf(deliveryID)).Should(HaveLen(4))
		var deliveries, attempts []sdktrace.ReadOnlySpan
		for _, span := range spansOf(deliveryID)() {
			if span.Name() == "webhook delivery" {
				deliveries = append(deliveries, span)
			} else {
				attempts = append(attempts, span)
			}
		}
		Expect(deliveries).To(HaveLen(2))
		Expect(deliveries[0].SpanContext().SpanID()).NotTo(Equal(deliveries[1].SpanContext().SpanID()),
			"two delivery spans with one id")
		for i, attempt := range attempts {
			Expect(attempt.Parent().SpanID()).To(Equal(deliveries[i].SpanContext().SpanID()),
				"attempt of round %d under its own round's delivery span", i+1)
		}
	})

	It("ignores an invalid traceparent with a Warning Event and still delivers", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "orders", recv.URL)
		ev := newEvent(ns, "badly-traced", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Annotations = map[string]string{webhooksv1alpha1.TraceParentAnnotation: "not-a-traceparent"}
		})
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.InvalidTraceContextEvent)).Should(
			ContainElement(ContainSubstring("a trace of its own")))
		Expect(recv.received()[0].header.Get("traceparent")).To(HavePrefix("00-"))
	})
})
