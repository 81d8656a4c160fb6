package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/1flow/webhook-operator/internal/localcluster"
)

// TestCrashSafety kills the manager with SIGKILL in the middle of a burst and restarts it: every event
// is delivered, nothing recorded Delivered before the kill is sent again, and every duplicate carries the
// delivery id of its first copy.
func TestCrashSafety(t *testing.T) {
	g := NewWithT(t)
	const ns, secret, events = "e2e-crash", "crash-secret", 300
	recv := newCountingReceiver(t, secret, 5*time.Millisecond)
	setupTenant(t, ns, secret, recv.URL)

	first, _ := startManager(t, "before-kill", fastLeaderElection...)
	created := make(chan struct{})
	go func() {
		defer close(created)
		createEvents(t, ns, "burst", events)
	}()
	g.Eventually(func() int { return len(recv.counts()) }, time.Minute, 5*time.Millisecond).Should(BeNumerically(">=", events/4))
	g.Expect(first.Kill()).To(Succeed())

	recordedBeforeKill, _ := deliveredIDs(t, ns)
	sentBeforeRestart := recv.counts()
	<-created
	_, pendingAtKill := deliveredIDs(t, ns)
	t.Logf("at the kill: %d received by the receiver, %d recorded Delivered, %d events not Delivered",
		len(sentBeforeRestart), len(recordedBeforeKill), pendingAtKill)
	g.Expect(pendingAtKill).To(BeNumerically(">", 0), "the kill must land mid-burst for this test to mean anything")

	startManager(t, "after-kill", fastLeaderElection...)
	delivered := waitAllDelivered(t, ns, 2*time.Minute)
	g.Expect(delivered).To(HaveLen(events))

	final := recv.counts()
	g.Expect(final).To(HaveLen(events), "every event reached the receiver")
	duplicates := 0
	for id, n := range final {
		if recordedBeforeKill[id] {
			g.Expect(n).To(Equal(sentBeforeRestart[id]), "delivery %s was recorded Delivered before the kill and sent again", id)
		}
		if n > 1 {
			duplicates++
			g.Expect(recordedBeforeKill[id]).To(BeFalse())
		}
	}
	t.Logf("duplicates after restart: %d of %d events (same X-Webhook-Id as their first copy)", duplicates, events)
}

// TestLeaderHandover runs two replicas, kills the leader, and checks that the standby takes over and
// delivers everything.
func TestLeaderHandover(t *testing.T) {
	g := NewWithT(t)
	const ns, secret = "e2e-ha", "ha-secret"
	recv := newCountingReceiver(t, secret, 0)
	setupTenant(t, ns, secret, recv.URL)

	leader, _ := startManager(t, "replica-a", fastLeaderElection...)
	holder := func() string {
		lease := &coordinationv1.Lease{}
		key := types.NamespacedName{Namespace: localcluster.LeaderElectionNamespace, Name: "webhook-operator.webhooks.1flow.io"}
		if err := cluster.Client.Get(context.Background(), key, lease); err != nil || lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	g.Eventually(holder, 30*time.Second, 100*time.Millisecond).ShouldNot(BeEmpty())
	firstHolder := holder()
	startManager(t, "replica-b", fastLeaderElection...)

	createEvents(t, ns, "before", 20)
	waitAllDelivered(t, ns, time.Minute)

	g.Expect(leader.Kill()).To(Succeed())
	createEvents(t, ns, "after", 20)
	g.Eventually(holder, 30*time.Second, 100*time.Millisecond).ShouldNot(Equal(firstHolder))
	waitAllDelivered(t, ns, time.Minute)
	g.Expect(recv.counts()).To(HaveLen(40))
}

// TestGracefulShutdown sends SIGTERM while an attempt is in flight: the manager lets it finish, records
// it, and exits cleanly, so nothing is sent twice after a rolling update.
func TestGracefulShutdown(t *testing.T) {
	g := NewWithT(t)
	const ns, secret = "e2e-sigterm", "sigterm-secret"
	recv := newCountingReceiver(t, secret, 2*time.Second)
	setupTenant(t, ns, secret, recv.URL)

	manager, _ := startManager(t, "graceful", fastLeaderElection...)
	createEvents(t, ns, "slow", 1)
	g.Eventually(recv.inFlight, 30*time.Second).Should(Receive(), "the attempt reached the receiver")

	start := time.Now()
	g.Expect(manager.Stop(30 * time.Second)).To(Succeed())
	g.Expect(time.Since(start)).To(BeNumerically(">=", time.Second), "the manager waited for the attempt in flight")

	delivered, pending := deliveredIDs(t, ns)
	g.Expect(pending).To(BeZero(), "the attempt that finished during shutdown is recorded")
	g.Expect(delivered).To(HaveLen(1))
	g.Expect(recv.counts()).To(HaveLen(1))
}
