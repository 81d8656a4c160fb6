package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/1flow/webhook-operator/internal/localcluster"
)

// crashKillPoints are how many events the receiver has seen when a try of TestCrashSafety kills the
// manager; each try kills at another point of the burst.
var crashKillPoints = []int{75, 150, 40}

// TestCrashSafety kills the manager with SIGKILL in the middle of a burst and restarts it: every event
// is delivered, nothing recorded Delivered before the kill is sent again, and every delivery that
// reached the receiver without being recorded is sent again under its delivery id. That last claim
// needs such a delivery at the kill; a try whose kill catches none proves nothing, so the scenario is
// tried again at another kill point, and the test fails if no try catches one.
func TestCrashSafety(t *testing.T) {
	for try, killAfter := range crashKillPoints {
		var unrecorded int
		name := fmt.Sprintf("kill after %d received", killAfter)
		if !t.Run(name, func(t *testing.T) {
			unrecorded = crashAndRestart(t, fmt.Sprintf("e2e-crash-%d", try+1), killAfter)
		}) {
			return
		}
		if unrecorded > 0 {
			return
		}
		t.Logf("try %d: no delivery was between the receiver and its Delivered record at the kill", try+1)
	}
	t.Fatalf("none of %d tries (kill points %v) killed the manager after a delivery reached the receiver and before "+
		"it was recorded Delivered, so the restart never had to send one again", len(crashKillPoints), crashKillPoints)
}

// crashAndRestart runs one try of TestCrashSafety in namespace ns: it kills the manager once the
// receiver has seen killAfter events, restarts it, and returns how many deliveries had reached the
// receiver without being recorded Delivered at the kill.
func crashAndRestart(t *testing.T, ns string, killAfter int) int {
	g := NewWithT(t)
	const secret, events = "crash-secret", 300
	recv := newCountingReceiver(t, secret, 5*time.Millisecond)
	setupTenant(t, ns, secret, recv.URL)

	first, _ := startManager(t, "before-kill", fastLeaderElection...)
	created := make(chan struct{})
	go func() {
		defer close(created)
		createEvents(t, ns, "burst", events)
	}()
	g.Eventually(func() int { return len(recv.counts()) }, time.Minute, 5*time.Millisecond).Should(BeNumerically(">=", killAfter))
	g.Expect(first.Kill()).To(Succeed())

	recordedBeforeKill := recordedAfterKill(t, ns)
	sentBeforeRestart := recv.counts()
	var unrecorded []string
	for id := range sentBeforeRestart {
		if !recordedBeforeKill[id] {
			unrecorded = append(unrecorded, id)
		}
	}
	<-created
	t.Logf("at the kill: %d received by the receiver, %d recorded Delivered, %d received but not recorded",
		len(sentBeforeRestart), len(recordedBeforeKill), len(unrecorded))

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
	for _, id := range unrecorded {
		g.Expect(final[id]).To(BeNumerically(">", sentBeforeRestart[id]),
			"delivery %s reached the receiver but was not recorded Delivered at the kill, and was not sent again", id)
	}
	t.Logf("duplicates after restart: %d of %d events (same X-Webhook-Id as their first copy)", duplicates, events)
	return len(unrecorded)
}

// recordedAfterKill returns the delivery ids recorded Delivered in ns once the count has held still
// for a second: the API server still applies the status writes a killed manager had sent, for a second
// or more while the burst's creations load it, and a write applied late must not count as missing.
func recordedAfterKill(t *testing.T, ns string) map[string]bool {
	t.Helper()
	recorded, _ := deliveredIDs(t, ns)
	for unchanged := 0; unchanged < 4; {
		time.Sleep(250 * time.Millisecond)
		now, _ := deliveredIDs(t, ns)
		if len(now) == len(recorded) {
			unchanged++
		} else {
			unchanged = 0
		}
		recorded = now
	}
	return recorded
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
