package controller

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// independentSignature recomputes the signature from the spec text alone: lowercase hex HMAC-SHA256 of
// the timestamp header immediately followed by the raw body.
func independentSignature(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + string(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

var _ = Describe("DocumentEvent delivery", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("delivers a signed document.ready payload that a receiver written from the spec accepts", func() {
		recv := newReceiver(always(200))
		newSecret(ns, "signing", map[string]string{"signingSecret": "s3cret-value"})
		ep := newEndpoint(ns, "orders", recv.URL+"/webhook", withSecret("signing"))
		amount := webhooksv1alpha1.Decimal("1234.56")
		ev := newEvent(ns, "doc-1", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{
				Description: ptr.To("Invoice #1"), TotalAmount: &amount, DocumentDate: "2024-01-15",
			}
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{
				Fields: &apiextensionsv1.JSON{Raw: []byte(`{"invoiceNumber":"1042"}`)},
				Tables: &apiextensionsv1.JSON{Raw: []byte(`{"items":[{"quantity":2,"unitPrice":617.28}]}`)},
			}
		})

		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventDelivered),
			haveCondition(webhooksv1alpha1.DeliveredCondition, metav1.ConditionTrue, webhooksv1alpha1.DeliverySucceededReason)))

		reqs := recv.received()
		Expect(reqs).To(HaveLen(1))
		req := reqs[0]
		Expect(req.header.Get("Content-Type")).To(Equal("application/json"))
		Expect(req.header.Get("User-Agent")).To(Equal("1Flow-Webhook/1.0"))
		ts := req.header.Get("X-Webhook-Timestamp")
		ms, err := strconv.ParseInt(ts, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "timestamp must be decimal unix milliseconds")
		Expect(time.UnixMilli(ms)).To(BeTemporally("~", req.at, 5*time.Second))
		Expect(req.header.Get("X-Webhook-Signature")).To(Equal(independentSignature("s3cret-value", ts, req.body)))

		got := getEvent(ev)(Default)
		d := got.GetDelivery("orders")
		Expect(d).NotTo(BeNil())
		Expect(req.header.Get("X-Webhook-Id")).To(Equal(d.DeliveryID))
		Expect(d.Phase).To(Equal(webhooksv1alpha1.DeliveryDelivered))
		Expect(d.Attempts).To(Equal(int32(1)))
		Expect(d.LastStatusCode).To(Equal(int32(200)))
		Expect(d.DeliveredAt).NotTo(BeNil())
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))

		Expect(string(req.body)).To(MatchJSON(`{
			"event": "document.ready", "success": true, "documentId": "doc_doc-1",
			"status": {"extractionStatus": "INDEXED", "docType": "INVOICE", "createdAt": "2024-01-15T10:30:00Z",
			           "updatedAt": "2024-01-15T10:35:00.123Z", "extractionErrors": null},
			"document": {"description": "Invoice #1", "totalAmount": 1234.56, "documentDate": "2024-01-15"},
			"extraction": {"fields": {"invoiceNumber": "1042"}, "tables": {"items": [{"quantity": 2, "unitPrice": 617.28}]}}
		}`))
		Expect(string(req.body)).To(ContainSubstring(`"totalAmount":1234.56`))

		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastDelivery.Event", "doc-1"),
			HaveField("Status.LastDelivery.Success", true),
			HaveField("Status.LastDelivery.StatusCode", int32(200)),
			HaveField("Status.ConsecutiveFailures", int32(0)),
			haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue, webhooksv1alpha1.ReadyReason)))
	})

	It("sends absent document and extraction as null, and defaults the status timestamps", func() {
		recv := newReceiver(always(204))
		newEndpoint(ns, "plain", recv.URL)
		ev := newEvent(ns, "bare", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.DocumentStatus = webhooksv1alpha1.DocumentStatus{}
		})
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		req := recv.received()[0]
		Expect(req.header.Get("X-Webhook-Signature")).To(BeEmpty(), "no secretRef means no signature")
		var body map[string]any
		Expect(json.Unmarshal(req.body, &body)).To(Succeed())
		Expect(body).To(HaveKeyWithValue("document", BeNil()))
		Expect(body).To(HaveKeyWithValue("extraction", BeNil()))
		created := getEvent(ev)(Default).CreationTimestamp.UTC().Format(time.RFC3339)
		Expect(body["status"]).To(Equal(map[string]any{
			"extractionStatus": "INDEXED", "docType": nil, "createdAt": created, "updatedAt": created,
			"extractionErrors": nil,
		}))
	})

	It("retries 500s with growing intervals until the receiver accepts", func() {
		recv := newReceiver(func(n int) int {
			if n < 3 {
				return 500
			}
			return 200
		})
		ep := newEndpoint(ns, "flaky", recv.URL, withRetry(5, 300*time.Millisecond))
		ev := newEvent(ns, "retried")
		waits := recordScheduledWaits(ev, "flaky")

		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("Phase", webhooksv1alpha1.DeliveryRetrying),
			HaveField("LastStatusCode", int32(500)),
			HaveField("LastError", HavePrefix("HTTP 500")),
			HaveField("NextAttemptTime", Not(BeNil()))))))
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		d := getEvent(ev)(Default).GetDelivery("flaky")
		Expect(d.Attempts).To(Equal(int32(4)))
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.DeliveredAfterRetriesEvent)).Should(ConsistOf(
			"delivered to flaky on attempt 4"))
		reqs := recv.received()
		Expect(reqs).To(HaveLen(4))
		for _, r := range reqs {
			Expect(r.header.Get("X-Webhook-Id")).To(Equal(d.DeliveryID), "retries keep the delivery id")
		}
		// The schedule recorded in status: 300ms, 600ms, 1.2s, each with ±20% jitter, so each wait is
		// longer than the one before.
		Expect(waits()).To(HaveLen(3))
		Expect(waits()[1]).To(BeNumerically("~", 300*time.Millisecond, 61*time.Millisecond))
		Expect(waits()[2]).To(BeNumerically(">", waits()[1]))
		Expect(waits()[3]).To(BeNumerically(">", waits()[2]))

		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastDelivery.Success", true),
			HaveField("Status.ConsecutiveFailures", int32(0))))
	})

	It("records timeouts and fails the delivery after maxAttempts", func() {
		recv := newReceiver(always(-1))
		ep := newEndpoint(ns, "hanging", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
		}, withRetry(3, 300*time.Millisecond))
		ev := newEvent(ns, "timed-out")
		waits := recordScheduledWaits(ev, "hanging")

		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventFailed),
			haveCondition(webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse, webhooksv1alpha1.DeliveryFailedReason)))
		d := getEvent(ev)(Default).GetDelivery("hanging")
		Expect(d.Phase).To(Equal(webhooksv1alpha1.DeliveryFailed))
		Expect(d.Reason).To(Equal(webhooksv1alpha1.AttemptsExhaustedReason))
		Expect(d.Attempts).To(Equal(int32(3)))
		Expect(d.LastStatusCode).To(BeZero())
		Expect(d.LastError).To(ContainSubstring("timeout"))
		Expect(d.Duration.Duration).To(BeNumerically(">=", 300*time.Millisecond))

		reqs := recv.received()
		Expect(reqs).To(HaveLen(3))
		Expect(waits()).To(HaveLen(2))
		Expect(waits()[2]).To(BeNumerically(">", waits()[1]))
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(Equal(3), "no attempt after Failed")

		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastDelivery.Success", false),
			HaveField("Status.ConsecutiveFailures", int32(3))))
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.DeliveryFailedEvent)).Should(ConsistOf(
			And(ContainSubstring("hanging"), ContainSubstring("3 attempts"), ContainSubstring("AttemptsExhausted"))))
	})

	It("holds deliveries while the Secret is missing, never sending unsigned, and resumes once it exists", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "signed", recv.URL, withSecret("late-secret"))
		ev := newEvent(ns, "waits-for-secret")

		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SecretNotFoundReason))
		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("Phase", webhooksv1alpha1.DeliveryPending),
			HaveField("Reason", webhooksv1alpha1.EndpointNotReadyReason)))))
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(BeZero())

		By("creating the Secret without the key")
		secret := newSecret(ns, "late-secret", map[string]string{"other": "x"})
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SecretKeyMissingReason))
		Consistently(func() int { return len(recv.received()) }, 500*time.Millisecond).Should(BeZero())

		By("adding the key")
		secret.StringData = map[string]string{"signingSecret": "finally"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue,
			webhooksv1alpha1.ReadyReason))

		req := recv.received()[0]
		Expect(req.header.Get("X-Webhook-Signature")).To(Equal(
			independentSignature("finally", req.header.Get("X-Webhook-Timestamp"), req.body)))
		Expect(getEndpoint(ep)(Default).Status.Conditions[0].Message).NotTo(ContainSubstring("finally"))
		Eventually(eventNotes(ns, ep.Name, webhooksv1alpha1.EndpointNotReadyEvent)).Should(ConsistOf(
			HavePrefix("SecretNotFound"), HavePrefix("SecretKeyMissing")))
		Eventually(eventNotes(ns, ep.Name, webhooksv1alpha1.EndpointReadyEvent)).Should(HaveLen(1))
	})

	It("signs with the rotated secret on the next delivery without a restart", func() {
		recv := newReceiver(always(200))
		secret := newSecret(ns, "rotating", map[string]string{"signingSecret": "old-key"})
		newEndpoint(ns, "rotated", recv.URL, withSecret("rotating"))

		first := newEvent(ns, "before-rotation")
		Eventually(getEvent(first)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		secret.StringData = map[string]string{"signingSecret": "new-key"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		// The manager has seen the rotation once its cache holds the Secret's new resourceVersion: the
		// resolver compares that version with the value it keeps, so the very next delivery must use the
		// new key. One event, not a loop until one is signed right, which would pass an operator that keeps
		// the old key for a few deliveries.
		Eventually(secretVersionInManagerCache(secret)).Should(Equal(secret.ResourceVersion))
		second := newEvent(ns, "after-rotation")
		Eventually(getEvent(second)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		reqs := recv.received()
		Expect(reqs).To(HaveLen(2))
		Expect(reqs[0].header.Get("X-Webhook-Signature")).To(Equal(
			independentSignature("old-key", reqs[0].header.Get("X-Webhook-Timestamp"), reqs[0].body)))
		Expect(reqs[1].header.Get("X-Webhook-Signature")).To(Equal(
			independentSignature("new-key", reqs[1].header.Get("X-Webhook-Timestamp"), reqs[1].body)),
			"the first delivery after the manager saw the rotation is signed with the new key")
	})

	It("targets endpoints by label selector, event type and docType", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "team-a-invoices", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"team": "a"}
			ep.Spec.DocTypes = []string{"INVOICE"}
		})
		newEndpoint(ns, "team-a-receipts", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"team": "a"}
			ep.Spec.DocTypes = []string{"RECEIPT"}
		})
		newEndpoint(ns, "team-b-all", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Labels = map[string]string{"team": "b"}
			ep.Spec.EventTypes = []webhooksv1alpha1.EventType{webhooksv1alpha1.DocumentReadyEvent}
		})

		invoice := newEvent(ns, "team-a-invoice", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.EndpointSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
		})
		receipt := newEvent(ns, "any-receipt", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.DocumentStatus.DocType = ptr.To("RECEIPT")
		})
		untyped := newEvent(ns, "untyped", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.DocumentStatus.DocType = nil
		})

		endpointsOf := func(ev *webhooksv1alpha1.DocumentEvent) []string {
			got := getEvent(ev)(Default)
			Expect(got.Status.Phase).To(Equal(webhooksv1alpha1.DocumentEventDelivered))
			names := make([]string, 0, len(got.Status.Deliveries))
			for _, d := range got.Status.Deliveries {
				names = append(names, d.Endpoint)
			}
			return names
		}
		for _, ev := range []*webhooksv1alpha1.DocumentEvent{invoice, receipt, untyped} {
			Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Expect(endpointsOf(invoice)).To(ConsistOf("team-a-invoices"))
		Expect(endpointsOf(receipt)).To(ConsistOf("team-a-receipts", "team-b-all"))
		Expect(endpointsOf(untyped)).To(ConsistOf("team-b-all"), "a docTypes filter never matches a null docType")
		Expect(recv.received()).To(HaveLen(4))
	})

	It("keeps an event created before its endpoint Pending, then delivers it when the endpoint appears", func() {
		recv := newReceiver(always(200))
		ev := newEvent(ns, "early")
		readyMessage := func(g Gomega) string {
			cond := apimeta.FindStatusCondition(getEvent(ev)(g).Status.Conditions, webhooksv1alpha1.ReadyCondition)
			g.Expect(cond).NotTo(BeNil())
			return cond.Message
		}
		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventPending),
			haveCondition(webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse, webhooksv1alpha1.NoEndpointsReason)))
		Eventually(readyMessage).Should(HavePrefix(fmt.Sprintf("no WebhookEndpoint exists in namespace %q", ns)))

		newEndpoint(ns, "receipts-only", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.DocTypes = []string{"RECEIPT"}
		})
		Eventually(readyMessage).Should(ContainSubstring(`excluded 1 by their spec.docTypes (the event's docType is "INVOICE")`))
		newEndpoint(ns, "late", recv.URL)
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(recv.received()).To(HaveLen(1))
	})

	It("holds deliveries while the endpoint is suspended and sends them when it resumes", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "paused", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Suspend = true })
		ev := newEvent(ns, "while-paused")
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SuspendedReason))
		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("Reason", webhooksv1alpha1.EndpointNotReadyReason))))
		Consistently(func() int { return len(recv.received()) }, 500*time.Millisecond).Should(BeZero())

		patch := client.MergeFrom(ep.DeepCopy())
		ep.Spec.Suspend = false
		Expect(k8sClient.Patch(ctx, ep, patch)).To(Succeed())
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
	})

	It("fails a delivery whose endpoint is deleted, with reason EndpointDeleted", func() {
		recv := newReceiver(always(503))
		ep := newEndpoint(ns, "doomed", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
				MaxAttempts: 50, InitialInterval: &metav1.Duration{Duration: 10 * time.Second},
			}
		})
		ev := newEvent(ns, "orphaned")
		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("Phase", webhooksv1alpha1.DeliveryRetrying))))

		Expect(k8sClient.Delete(ctx, ep)).To(Succeed())
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventFailed))
		d := getEvent(ev)(Default).GetDelivery("doomed")
		Expect(d.Phase).To(Equal(webhooksv1alpha1.DeliveryFailed))
		Expect(d.Reason).To(Equal(webhooksv1alpha1.EndpointDeletedReason))
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.DeliveryFailedEvent)).Should(ConsistOf(
			ContainSubstring("EndpointDeleted")))
	})

	It("fans one event out to several endpoints, each with its own delivery id", func() {
		ok, broken := newReceiver(always(200)), newReceiver(always(500))
		newEndpoint(ns, "good", ok.URL)
		newEndpoint(ns, "bad", broken.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Retry = fastRetry(2) })
		ev := newEvent(ns, "fanned-out")

		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventFailed),
			haveCondition(webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse, webhooksv1alpha1.DeliveryFailedReason)))
		got := getEvent(ev)(Default)
		Expect(got.GetDelivery("good").Phase).To(Equal(webhooksv1alpha1.DeliveryDelivered))
		Expect(got.GetDelivery("bad").Phase).To(Equal(webhooksv1alpha1.DeliveryFailed))
		Expect(got.GetDelivery("good").DeliveryID).NotTo(Equal(got.GetDelivery("bad").DeliveryID))
		Expect(ok.received()).To(HaveLen(1), "the healthy endpoint got the event exactly once")
		Expect(broken.received()).To(HaveLen(2))
	})
})

var _ = Describe("Admission", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects invalid WebhookEndpoints with a clear message",
		func(mutate func(*webhooksv1alpha1.WebhookEndpoint), message string) {
			err := k8sClient.Create(ctx, endpointObject(ns, "bad", "https://example.com/hook", mutate))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a non-http scheme", func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.URL = "ftp://example.com/x" },
			"url must be an absolute http or https URL"),
		Entry("a relative URL", func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.URL = "/webhook" },
			"url must be an absolute http or https URL"),
		Entry("not a URL", func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.URL = "not a url" },
			"url must be an absolute http or https URL"),
		Entry("a URL over 2048 characters", func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.URL = "https://example.com/" + strings.Repeat("a", 2040)
		}, "spec.url: Too long"),
		Entry("an unknown event type", func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.EventTypes = []webhooksv1alpha1.EventType{"document.deleted"}
		}, `Unsupported value: "document.deleted"`),
		Entry("a timeout over 60s", func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Timeout = &metav1.Duration{Duration: 2 * time.Minute}
		}, "timeout must be greater than 0s and at most 60s"),
		Entry("maxAttempts over 50", func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Retry.MaxAttempts = 51 },
			"spec.retry.maxAttempts: Invalid value"),
		Entry("an initial interval above the max interval", func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Retry.InitialInterval = &metav1.Duration{Duration: time.Hour}
		}, "retry.initialInterval must not exceed retry.maxInterval"),
	)

	It("applies the documented defaults", func() {
		ep := &webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults"},
			Spec: webhooksv1alpha1.WebhookEndpointSpec{
				URL:       "https://example.com/hook",
				SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "s"},
				Retry:     &webhooksv1alpha1.RetryPolicy{},
			},
		}
		Expect(k8sClient.Create(ctx, ep)).To(Succeed())
		Expect(ep.Spec.Timeout.Duration).To(Equal(10 * time.Second))
		Expect(ep.Spec.SecretRef.Key).To(Equal("signingSecret"))
		Expect(ep.Spec.Retry.MaxAttempts).To(Equal(int32(15)))
		Expect(ep.Spec.Retry.InitialInterval.Duration).To(Equal(5 * time.Second))
		Expect(ep.Spec.Retry.MaxInterval.Duration).To(Equal(time.Hour))

		ev := newEvent(ns, "defaults", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentStatus = webhooksv1alpha1.DocumentStatus{} })
		Expect(ev.Spec.Event).To(Equal(webhooksv1alpha1.DocumentReadyEvent))
		Expect(ev.Spec.DocumentStatus.ExtractionStatus).To(Equal("INDEXED"))
	})

	DescribeTable("rejects invalid DocumentEvents with a clear message",
		func(mutate func(*webhooksv1alpha1.DocumentEvent), message string) {
			err := k8sClient.Create(ctx, eventObject(ns, "bad", mutate))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a missing documentId", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentID = "" },
			"spec.documentId"),
		Entry("a documentId over 256 characters", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.DocumentID = strings.Repeat("d", 257)
		}, "spec.documentId: Too long"),
		Entry("the wrong event", func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.Event = "document.deleted" },
			`spec.event: Unsupported value: "document.deleted"`),
		Entry("a documentDate in another format", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{DocumentDate: "15/01/2024"}
		}, "documentDate must be a calendar date in YYYY-MM-DD format"),
		Entry("a documentDate that is not a date", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{DocumentDate: "2024-13-45"}
		}, "spec.document.documentDate"),
		Entry("a totalAmount that is not a number", func(ev *webhooksv1alpha1.DocumentEvent) {
			amount := webhooksv1alpha1.Decimal("12,50")
			ev.Spec.Document = &webhooksv1alpha1.DocumentSummary{TotalAmount: &amount}
		}, "spec.document.totalAmount"),
		Entry("a createdAt that is not RFC 3339", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.DocumentStatus.CreatedAt = "yesterday"
		}, "createdAt must be an RFC 3339 timestamp"),
		Entry("extraction fields that are not an object", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{Fields: &apiextensionsv1.JSON{Raw: []byte(`[1,2]`)}}
		}, "spec.extraction.fields"),
	)

	It("rejects any edit of an event's spec, including free-form extraction data", func() {
		ev := newEvent(ns, "frozen", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{Fields: &apiextensionsv1.JSON{Raw: []byte(`{"a":1}`)}}
		})
		edits := []func(*webhooksv1alpha1.DocumentEvent){
			func(ev *webhooksv1alpha1.DocumentEvent) { ev.Spec.DocumentID = "doc_changed" },
			func(ev *webhooksv1alpha1.DocumentEvent) {
				ev.Spec.Extraction.Fields = &apiextensionsv1.JSON{Raw: []byte(`{"a":2}`)}
			},
		}
		// Merge patches carry no resourceVersion, so the controller's own status writes cannot make
		// these fail with a conflict instead of the validation error.
		for _, edit := range edits {
			current := getEvent(ev)(Default)
			patch := client.MergeFrom(current.DeepCopy())
			edit(current)
			err := k8sClient.Patch(ctx, current, patch)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("spec is immutable"))
		}
		labelled := getEvent(ev)(Default)
		patch := client.MergeFrom(labelled.DeepCopy())
		labelled.Labels = map[string]string{"pipeline": "ocr"}
		Expect(k8sClient.Patch(ctx, labelled, patch)).To(Succeed(), "metadata stays editable")
	})
})
