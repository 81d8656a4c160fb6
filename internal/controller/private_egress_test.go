package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// privateTestAddress is the loopback address the suite's egress policy treats as private.
const privateTestAddress = "127.0.0.3"

func labelPrivateEgress(ns string, allowed bool) {
	namespace := &corev1.Namespace{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, namespace)).To(Succeed())
	patch := client.MergeFrom(namespace.DeepCopy())
	if allowed {
		namespace.Labels = map[string]string{webhooksv1alpha1.PrivateEgressLabel: webhooksv1alpha1.PrivateEgressAllowed}
	} else {
		delete(namespace.Labels, webhooksv1alpha1.PrivateEgressLabel)
	}
	Expect(k8sClient.Patch(ctx, namespace, patch)).To(Succeed())
}

var _ = Describe("Private egress", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("refuses a private address until an administrator labels the namespace, and again once the label goes", func() {
		recv := newReceiverOn(privateTestAddress+":0", always(200))
		ep := newEndpoint(ns, "internal", recv.URL)
		readyMessage := func(g Gomega) string {
			cond := apimeta.FindStatusCondition(getEndpoint(ep)(g).Status.Conditions, webhooksv1alpha1.ReadyCondition)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(webhooksv1alpha1.DestinationBlockedReason))
			return cond.Message
		}
		Eventually(readyMessage).Should(ContainSubstring(
			webhooksv1alpha1.PrivateEgressLabel + "=" + webhooksv1alpha1.PrivateEgressAllowed))
		waiting := newEvent(ns, "waits-for-the-label")
		Eventually(getEvent(waiting)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("Reason", webhooksv1alpha1.DestinationBlockedReason))))
		Consistently(recv.received, time.Second).Should(BeEmpty(), "nothing reaches a private address")

		labelPrivateEgress(ns, true)
		Eventually(getEvent(waiting)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(recv.received()).To(HaveLen(1))

		labelPrivateEgress(ns, false)
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.DestinationBlockedReason))
		refused := newEvent(ns, "after-the-label-went")
		Eventually(getEvent(refused)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("Reason", webhooksv1alpha1.DestinationBlockedReason))))
		Consistently(recv.received, time.Second).Should(HaveLen(1))
	})
})
