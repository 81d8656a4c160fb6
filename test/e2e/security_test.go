package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
)

func getEndpoint(t *testing.T, ns, name string) *webhooksv1alpha1.WebhookEndpoint {
	t.Helper()
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

func getEvent(t *testing.T, ns, name string) *webhooksv1alpha1.DocumentEvent {
	t.Helper()
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func readyReason(ep *webhooksv1alpha1.WebhookEndpoint) string {
	for _, c := range ep.Status.Conditions {
		if c.Type == webhooksv1alpha1.ReadyCondition {
			return c.Reason
		}
	}
	return ""
}

// TestEgressPolicyBlocksLoopbackAtDialTime runs the manager with its default egress policy (no
// --allowed-cidrs): loopback receivers are refused, whether the URL names an IP or a host name that
// resolves to one, and a blocked delivery is retried only after the endpoint's spec changes.
func TestEgressPolicyBlocksLoopbackAtDialTime(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const ns = "e2e-egress"
	var hits atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(recv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(recv.URL, "http://"))

	g.Expect(cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	fastRetry := &webhooksv1alpha1.RetryPolicy{
		MaxAttempts:     20,
		InitialInterval: &metav1.Duration{Duration: 50 * time.Millisecond},
		MaxInterval:     &metav1.Duration{Duration: 100 * time.Millisecond},
	}
	for name, url := range map[string]string{
		"ip-literal": "http://127.0.0.1:" + port + "/hook",
		"host-name":  "http://localhost:" + port + "/hook",
	} {
		g.Expect(cluster.Client.Create(ctx, &webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"endpoint": name}},
			Spec:       webhooksv1alpha1.WebhookEndpointSpec{URL: url, Retry: fastRetry},
		})).To(Succeed())
		g.Expect(cluster.Client.Create(ctx, &webhooksv1alpha1.DocumentEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-" + name},
			Spec: webhooksv1alpha1.DocumentEventSpec{
				DocumentID:       "doc_" + name,
				EndpointSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"endpoint": name}},
			},
		})).To(Succeed())
	}
	// Override the loopback allowance that tests normally get.
	startManager(t, "egress", append(fastLeaderElection, "--allowed-cidrs=")...)

	g.Eventually(func() string { return readyReason(getEndpoint(t, ns, "ip-literal")) }, 30*time.Second, 100*time.Millisecond).
		Should(Equal(webhooksv1alpha1.DestinationBlockedReason), "an IP literal is refused before any attempt")
	g.Eventually(func() string { return readyReason(getEndpoint(t, ns, "host-name")) }, 30*time.Second, 100*time.Millisecond).
		Should(Equal(webhooksv1alpha1.DestinationBlockedReason), "a host name is refused at dial time, after resolution")

	blocked := func() *webhooksv1alpha1.EndpointDelivery {
		return getEvent(t, ns, "to-host-name").GetDelivery("host-name")
	}
	g.Eventually(func() string { return blocked().Reason }, 10*time.Second, 100*time.Millisecond).
		Should(Equal(webhooksv1alpha1.DestinationBlockedReason))
	g.Expect(blocked().LastError).To(ContainSubstring("127.0.0.0/8"))
	refusedAt := blocked().LastAttemptTime
	g.Expect(refusedAt).NotTo(BeNil(), "the refused dial is recorded")
	// Nothing left the operator: the refused dial does not count against maxAttempts, and it is not
	// retried while the spec is unchanged, despite a 50ms retry interval.
	g.Consistently(func() string {
		d := blocked()
		return fmt.Sprintf("attempts=%d lastAttemptTime=%s", d.Attempts, d.LastAttemptTime.Format(time.RFC3339Nano))
	}, 1500*time.Millisecond, 100*time.Millisecond).
		Should(Equal("attempts=0 lastAttemptTime=" + refusedAt.Format(time.RFC3339Nano)))

	ep := getEndpoint(t, ns, "host-name")
	patch := client.MergeFrom(ep.DeepCopy())
	ep.Spec.URL = "http://localhost:" + port + "/moved"
	g.Expect(cluster.Client.Patch(ctx, ep, patch)).To(Succeed())
	g.Eventually(func() bool { return blocked().LastAttemptTime.After(refusedAt.Time) }, 10*time.Second, 100*time.Millisecond).
		Should(BeTrue(), "a spec change allows one more attempt")
	g.Expect(blocked().Attempts).To(BeZero(), "a refused dial never counts as an attempt")

	g.Expect(getEvent(t, ns, "to-ip-literal").GetDelivery("ip-literal").Attempts).To(BeZero())
	g.Expect(hits.Load()).To(BeZero(), "nothing reached the loopback receiver")
}

// TestSecretsNeverLeak runs deliveries that fail, redirect and succeed against an endpoint whose URL
// carries credentials, with debug logging and metrics on, then searches every output for the canaries.
func TestSecretsNeverLeak(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const ns = "e2e-canary"
	canaries := []string{"canary-secret-7f3a", "canary-previous-91bc", "canary-pass-5d2e", "canary-token-c84f"}
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Location", "/elsewhere?token="+canaries[3])
			w.WriteHeader(http.StatusFound)
		case 2:
			http.Error(w, "temporarily broken", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(recv.Close)

	g.Expect(cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	g.Expect(cluster.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signing"},
		StringData: map[string]string{"signingSecret": canaries[0], "previousSigningSecret": canaries[1]},
	})).To(Succeed())
	url := strings.Replace(recv.URL, "http://", "http://user:"+canaries[2]+"@", 1) + "/hook?token=" + canaries[3]
	g.Expect(cluster.Client.Create(ctx, &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leaky"},
		Spec: webhooksv1alpha1.WebhookEndpointSpec{
			URL:       url,
			SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "signing"},
			Signature: &webhooksv1alpha1.SignaturePolicy{Scheme: webhooksv1alpha1.SignatureSchemeStandardWebhooks},
			Retry: &webhooksv1alpha1.RetryPolicy{
				MaxAttempts:     5,
				InitialInterval: &metav1.Duration{Duration: 50 * time.Millisecond},
			},
		},
	})).To(Succeed())

	metricsAddr, err := localcluster.FreeAddress()
	g.Expect(err).NotTo(HaveOccurred())
	manager, logPath := startManager(t, "canary", append(fastLeaderElection,
		"--zap-log-level=debug", "--metrics-secure=false", "--metrics-bind-address="+metricsAddr)...)
	createEvents(t, ns, "canary", 1)
	waitAllDelivered(t, ns, time.Minute)
	g.Expect(calls.Load()).To(Equal(int32(3)), "a redirect, a 500 and a success")

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(string(metrics)).To(ContainSubstring("controller_runtime_reconcile_total"))

	g.Expect(manager.Stop(30 * time.Second)).To(Succeed())
	logs, err := os.ReadFile(logPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(logs)).To(ContainSubstring("delivery attempt"), "debug logging of attempts was on")

	events := &eventsv1.EventList{}
	g.Expect(cluster.Client.List(ctx, events, client.InNamespace(ns))).To(Succeed())
	g.Expect(events.Items).NotTo(BeEmpty())
	eventsJSON, _ := json.Marshal(events.Items)
	des := &webhooksv1alpha1.DocumentEventList{}
	g.Expect(cluster.Client.List(ctx, des, client.InNamespace(ns))).To(Succeed())
	statusJSON, _ := json.Marshal([]any{des.Items[0].Status, getEndpoint(t, ns, "leaky").Status})
	g.Expect(string(statusJSON)).To(ContainSubstring(`"attempts":3`), "the status records the attempts")

	for name, text := range map[string]string{
		"manager log": string(logs), "Events": string(eventsJSON), "status": string(statusJSON), "metrics": string(metrics),
	} {
		for _, canary := range canaries {
			g.Expect(text).NotTo(ContainSubstring(canary), fmt.Sprintf("%s leaks %s", name, canary))
		}
	}
}
