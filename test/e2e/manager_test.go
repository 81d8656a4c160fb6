package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestManagerBinaryDeliversWithGeneratedRBAC(t *testing.T) {
	g := NewWithT(t)
	const ns, secret = "e2e-basic", "e2e-signing-secret"
	recv := newCountingReceiver(t, secret, 0)
	setupTenant(t, ns, secret, recv.URL)

	manager, logPath := startManager(t, "basic", fastLeaderElection...)

	createEvents(t, ns, "doc", 3)
	delivered := waitAllDelivered(t, ns, time.Minute)
	g.Expect(delivered).To(HaveLen(3))
	g.Expect(recv.counts()).To(HaveLen(3))
	g.Expect(recv.rejectedCount()).To(BeZero())

	// A graceful stop exits 0; the log shows the generated RBAC was enough and no secret leaked.
	g.Expect(manager.Stop(30 * time.Second)).To(Succeed())
	logs, err := os.ReadFile(logPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.ToLower(string(logs))).NotTo(ContainSubstring("forbidden"))
	g.Expect(string(logs)).NotTo(ContainSubstring(secret))
}
