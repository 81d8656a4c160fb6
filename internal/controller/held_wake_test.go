package controller

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// reportReadyAnyway writes Ready=True on an endpoint the endpoint controller found not ready, as a
// controller that has not looked since the endpoint was ready would still show it. A status write moves
// no generation, so the endpoint controller does not look again because of it.
func reportReadyAnyway(ep *webhooksv1alpha1.WebhookEndpoint) {
	current := getEndpoint(ep)(Default)
	patch := client.MergeFrom(current.DeepCopy())
	apimeta.SetStatusCondition(&current.Status.Conditions, metav1.Condition{
		Type: webhooksv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: webhooksv1alpha1.ReadyReason,
		Message: "endpoint accepts deliveries", ObservedGeneration: current.Generation,
	})
	apimeta.RemoveStatusCondition(&current.Status.Conditions, webhooksv1alpha1.StalledCondition)
	Expect(k8sClient.Status().Patch(ctx, current, patch)).To(Succeed())
}

// heldWithoutRetry matches an event whose only delivery is held with the reason and no retry time: only
// a change of what it waits for can start it.
func heldWithoutRetry(reason string) OmegaMatcher {
	return HaveField("Status.Deliveries", ConsistOf(And(
		HaveField("Phase", webhooksv1alpha1.DeliveryPending),
		HaveField("Reason", reason),
		HaveField("NextAttemptTime", BeNil()))))
}

// These specs keep the endpoint's Ready condition True throughout, so that nothing the endpoint controller
// writes can wake the held delivery: the DocumentEvent controller must see the change itself.
var _ = Describe("Held deliveries wake on what they wait for", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("starts a delivery held for a missing Secret once the Secret exists, with no change to the endpoint", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "lagging", recv.URL, withSecret("signing"))
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SecretNotFoundReason))
		reportReadyAnyway(ep)

		ev := newEvent(ns, "waits-for-the-secret")
		Eventually(getEvent(ev)).Should(heldWithoutRetry(webhooksv1alpha1.EndpointNotReadyReason))
		Expect(recv.received()).To(BeEmpty())

		newSecret(ns, "signing", map[string]string{"signingSecret": "recreated"})
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(recv.received()).To(HaveLen(1))
		Expect(getEndpoint(ep)(Default)).To(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue,
			webhooksv1alpha1.ReadyReason))
	})

	It("starts a delivery held for the private-egress label once an administrator sets it, with no change to the endpoint", func() {
		recv := newReceiverOn(privateTestAddress+":0", always(200))
		ep := newEndpoint(ns, "internal", recv.URL)
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.DestinationBlockedReason))
		reportReadyAnyway(ep)

		ev := newEvent(ns, "waits-for-the-label")
		Eventually(getEvent(ev)).Should(heldWithoutRetry(webhooksv1alpha1.DestinationBlockedReason))
		Expect(recv.received()).To(BeEmpty())

		labelPrivateEgress(ns, true)
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(recv.received()).To(HaveLen(1))
	})
})
