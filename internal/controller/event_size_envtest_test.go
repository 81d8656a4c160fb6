package controller

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

var _ = Describe("DocumentEvent size", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	withBlob := func(n int) func(*webhooksv1alpha1.DocumentEvent) {
		return func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{Fields: jsonObject("blob", n)}
		}
	}

	It("refuses an event that leaves too little room for its status before any attempt", func() {
		recv := newReceiver(always(200))
		for _, name := range []string{"a", "b", "c"} {
			newEndpoint(ns, name, recv.URL)
		}
		// 1.48 MB: created fine, but three deliveries could need up to 15 KB of status.
		ev := newEvent(ns, "too-large", withBlob(1_480_000))

		Eventually(getEvent(ev)).Should(And(
			havePhase(webhooksv1alpha1.DocumentEventFailed),
			haveCondition(webhooksv1alpha1.DeliveredCondition, metav1.ConditionFalse, webhooksv1alpha1.EventTooLargeReason),
			haveCondition(webhooksv1alpha1.StalledCondition, metav1.ConditionTrue, webhooksv1alpha1.EventTooLargeReason)))
		got := getEvent(ev)(Default)
		Expect(got.Status.Deliveries).To(HaveLen(3))
		for _, d := range got.Status.Deliveries {
			Expect(d.Phase).To(Equal(webhooksv1alpha1.DeliveryFailed))
			Expect(d.Reason).To(Equal(webhooksv1alpha1.EventTooLargeReason))
			Expect(d.Attempts).To(BeZero())
		}
		Expect(got.Status.Conditions[0].Message).To(MatchRegexp(
			`^the event takes 14\d{5} bytes as stored and its status can need \d+ more with 3 endpoints, over the \d+ bytes`))
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.EventTooLargeEvent)).Should(ConsistOf(
			ContainSubstring("nothing was sent")))
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(BeZero())
	})

	It("never sends an event whose status cannot be written at all, and says why", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "only", recv.URL)
		// Just under what etcd accepts (docs/security.md): the event is created, but no status fits.
		ev := newEvent(ns, "at-etcd-limit", withBlob(1_571_200))

		Consistently(func() int { return len(recv.received()) }, 2*time.Second).Should(BeZero())
		Eventually(eventNotes(ns, ev.Name, webhooksv1alpha1.EventTooLargeEvent)).Should(ContainElement(
			ContainSubstring("nothing was sent")))
		Expect(getEvent(ev)(Default).Status.Phase).To(BeEmpty())

		// What the API server answers for a status it cannot store: etcd's refusal, as an internal error.
		before := getEvent(ev)(Default)
		after := before.DeepCopy()
		after.Status.LastRedeliveryRequest = strings.Repeat("x", 4096)
		err := k8sClient.Status().Patch(ctx, after, client.MergeFrom(before))
		Expect(err).To(HaveOccurred())
		var status apierrors.APIStatus
		Expect(errors.As(err, &status)).To(BeTrue())
		GinkgoWriter.Printf("status write of an oversize event: HTTP %d, reason %q: %v\n",
			status.Status().Code, status.Status().Reason, err)
		Expect(apierrors.IsInternalError(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("etcdserver: request is too large"))
		Expect(objectTooLarge(err)).To(BeTrue())
	})

	It("bounds the managedFields of the largest status the API server stores", func() {
		ev := newEvent(ns, "largest-status")
		deliveries := targets(webhooksv1alpha1.MaxDeliveriesPerEvent, 253)
		before := getEvent(ev)(Default)
		after := before.DeepCopy()
		after.Status = worstStatus(deliveries, "")
		// Finished, so the operator leaves it alone; the schema's minimums for the generations.
		after.Status.Phase, after.Status.ObservedGeneration = webhooksv1alpha1.DocumentEventFailed, before.Generation
		for i := range after.Status.Conditions {
			after.Status.Conditions[i].ObservedGeneration = before.Generation
		}
		Expect(k8sClient.Status().Patch(ctx, after, client.MergeFrom(before))).To(Succeed())

		stored := &webhooksv1alpha1.DocumentEvent{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ev), stored)).To(Succeed())
		var statusFields int
		for _, entry := range stored.ManagedFields {
			if entry.Subresource == "status" {
				raw, err := json.Marshal(entry)
				Expect(err).NotTo(HaveOccurred())
				statusFields += len(raw) + 1
			}
		}
		Expect(statusFields).To(BeNumerically("<=", maxStatusFieldsBytes(deliveries)))
		Expect(statusFields).To(BeNumerically(">", maxStatusFieldsBytes(deliveries)*9/10), "the bound is too loose")
		whole, err := json.Marshal(stored)
		Expect(err).NotTo(HaveOccurred())
		size, err := measureEvent(stored)
		Expect(err).NotTo(HaveOccurred())
		Expect(len(whole)).To(BeNumerically("<=", size.stored+size.status+managedFieldsSlack))
	})

	It("refuses a redelivery that would leave too little room, and keeps the event as it was", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "first", recv.URL)
		// Room for one delivery's status, not for three.
		ev := newEvent(ns, "grows", withBlob(1_476_000))
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		newEndpoint(ns, "second", recv.URL)
		newEndpoint(ns, "third", recv.URL)

		patch := client.MergeFrom(ev.DeepCopy())
		ev.Annotations = map[string]string{webhooksv1alpha1.RedeliverRequestedAtAnnotation: "2024-01-15T10:30:00Z"}
		Expect(k8sClient.Patch(ctx, ev, patch)).To(Succeed())

		Eventually(getEvent(ev)).Should(HaveField("Status.LastRedeliveryRequest", "2024-01-15T10:30:00Z"))
		got := getEvent(ev)(Default)
		Expect(got.Status.Phase).To(Equal(webhooksv1alpha1.DocumentEventDelivered))
		Expect(got.Status.Deliveries).To(HaveLen(1))
		Expect(eventNotes(ns, ev.Name, webhooksv1alpha1.EventTooLargeEvent)(Default)).To(ConsistOf(
			MatchRegexp(`^redelivery refused: the event takes 14\d{5} bytes as stored and its status can need \d+ more with 3 endpoints,`)))
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(Equal(1))
	})
})
