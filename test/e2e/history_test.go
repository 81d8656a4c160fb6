package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// The manager binary caches only unfinished events. With the generated RBAC, it still redelivers a
// finished event on request and deletes one after its TTL, also when the TTL runs out after a restart,
// where only the list of finished events at start knows about it.
func TestManagerBinaryActsOnFinishedEventsItDoesNotCache(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const ns, secret = "e2e-history", "e2e-history-secret"
	recv := newCountingReceiver(t, secret, 0)
	setupTenant(t, ns, secret, recv.URL)
	manager, _ := startManager(t, "history", fastLeaderElection...)

	createEvents(t, ns, "kept", 1)
	expiring := &webhooksv1alpha1.DocumentEvent{}
	expiring.Namespace, expiring.Name = ns, "expiring"
	expiring.Spec.DocumentID = "doc_expiring"
	expiring.Spec.TTLSecondsAfterFinished = ptr.To[int32](15)
	g.Expect(cluster.Client.Create(ctx, expiring)).To(Succeed())
	ids := waitAllDelivered(t, ns, time.Minute)
	g.Expect(ids).To(HaveLen(2))

	kept := &webhooksv1alpha1.DocumentEvent{}
	g.Expect(cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kept-0000"}, kept)).To(Succeed())
	patch := client.MergeFrom(kept.DeepCopy())
	kept.Annotations = map[string]string{webhooksv1alpha1.RedeliverRequestedAtAnnotation: "e2e-1"}
	g.Expect(cluster.Client.Patch(ctx, kept, patch)).To(Succeed())
	id := kept.Status.Deliveries[0].DeliveryID
	g.Eventually(func() int { return recv.counts()[id] }, 30*time.Second).Should(Equal(2))
	g.Eventually(func(g Gomega) {
		g.Expect(cluster.Client.Get(ctx, client.ObjectKeyFromObject(kept), kept)).To(Succeed())
		g.Expect(kept.Status.Phase).To(Equal(webhooksv1alpha1.DocumentEventDelivered))
		g.Expect(kept.Status.LastRedeliveryRequest).To(Equal("e2e-1"))
	}, 30*time.Second).Should(Succeed())

	// Restarted before the TTL runs out: the new process learns of the event from its list at start.
	g.Expect(manager.Stop(30 * time.Second)).To(Succeed())
	g.Expect(cluster.Client.Get(ctx, client.ObjectKeyFromObject(expiring), expiring)).To(Succeed(),
		"the TTL ran out before the restart, which this test is about")
	startManager(t, "history-restarted", fastLeaderElection...)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(cluster.Client.Get(ctx, client.ObjectKeyFromObject(expiring), &webhooksv1alpha1.DocumentEvent{}))
	}, time.Minute).Should(BeTrue())
	g.Expect(cluster.Client.Get(ctx, client.ObjectKeyFromObject(kept), kept)).To(Succeed())
	g.Expect(recv.counts()[id]).To(Equal(2))
}
