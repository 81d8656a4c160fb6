// Package e2e runs the built manager binary as a separate process against a real API server, with only
// the generated RBAC, and checks a signed delivery end to end.
package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/pkg/signature"
)

func TestManagerBinaryDeliversWithGeneratedRBAC(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()

	cluster, err := localcluster.Start(root)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { g.Expect(cluster.Stop()).To(Succeed()) }()

	binary, err := localcluster.BuildManager(ctx, root, dir)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := cluster.ManagerKubeconfig(ctx, dir)
	g.Expect(err).NotTo(HaveOccurred())

	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.Create(logPath)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = logFile.Close() }()
	manager, err := localcluster.StartManager(ctx, binary, kubeconfig, logFile, "--leader-elect")
	g.Expect(err).NotTo(HaveOccurred())
	stopped := false
	defer func() {
		if !stopped {
			_ = manager.Kill()
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("manager log:\n%s", out)
		}
	}()

	secret := "e2e-signing-secret"
	var mu sync.Mutex
	var verified, rejected int
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := signature.Verify([]byte(secret), r.Header, body); err != nil {
			rejected++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		verified++
		_, _ = w.Write([]byte(`{"received": true}`))
	}))
	defer receiver.Close()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}
	c := cluster.Client
	g.Expect(c.Create(ctx, ns)).To(Succeed())
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "signing"},
		StringData: map[string]string{"signingSecret": secret},
	})).To(Succeed())
	ep := &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "receiver"},
		Spec: webhooksv1alpha1.WebhookEndpointSpec{
			URL:       receiver.URL + "/webhook",
			SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "signing"},
		},
	}
	g.Expect(c.Create(ctx, ep)).To(Succeed())
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "doc-e2e"},
		Spec:       webhooksv1alpha1.DocumentEventSpec{DocumentID: "doc_e2e"},
	}
	g.Expect(c.Create(ctx, ev)).To(Succeed())

	g.Eventually(func(g Gomega) {
		got := &webhooksv1alpha1.DocumentEvent{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ev), got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(webhooksv1alpha1.DocumentEventDelivered))
	}, time.Minute, 100*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		got := &webhooksv1alpha1.WebhookEndpoint{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ep), got)).To(Succeed())
		g.Expect(got.Status.LastDelivery).NotTo(BeNil())
		g.Expect(got.Status.LastDelivery.Success).To(BeTrue())
	}, time.Minute, 100*time.Millisecond).Should(Succeed())

	mu.Lock()
	g.Expect(verified).To(Equal(1))
	g.Expect(rejected).To(BeZero())
	mu.Unlock()

	// A graceful stop exits 0; the log shows the generated RBAC was enough and no secret leaked.
	g.Expect(manager.Stop(30 * time.Second)).To(Succeed())
	stopped = true
	logs, err := os.ReadFile(logPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.ToLower(string(logs))).NotTo(ContainSubstring("forbidden"))
	g.Expect(string(logs)).NotTo(ContainSubstring(secret))
}
