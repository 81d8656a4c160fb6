package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/engine"
)

// endpointEvents returns the Kubernetes Events about the named endpoint.
func endpointEvents(ns, name string) func(Gomega) []eventsv1.Event {
	return func(g Gomega) []eventsv1.Event {
		list := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var about []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Name == name {
				about = append(about, e)
			}
		}
		return about
	}
}

func haveEvent(eventType, reason string) OmegaMatcher {
	return ContainElement(And(HaveField("Type", eventType), HaveField("Reason", reason)))
}

// printedColumns returns the endpoint's row as `kubectl get` shows it: the API server's Table rendering
// of the CRD's additionalPrinterColumns, keyed by column name.
func printedColumns(ep *webhooksv1alpha1.WebhookEndpoint) func(Gomega) map[string]any {
	return func(g Gomega) map[string]any {
		config := rest.CopyConfig(cfg)
		config.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
		restClient, err := rest.UnversionedRESTClientFor(config)
		g.Expect(err).NotTo(HaveOccurred())
		raw, err := restClient.Get().
			AbsPath("/apis", webhooksv1alpha1.GroupVersion.Group, webhooksv1alpha1.GroupVersion.Version,
				"namespaces", ep.Namespace, "webhookendpoints", ep.Name).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
			DoRaw(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		table := &metav1.Table{}
		g.Expect(json.Unmarshal(raw, table)).To(Succeed())
		g.Expect(table.Rows).To(HaveLen(1))
		row := map[string]any{}
		for i, column := range table.ColumnDefinitions {
			row[column.Name] = table.Rows[0].Cells[i]
		}
		return row
	}
}

func suspended(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Suspend = true }

var _ = Describe("WebhookEndpoint status messages and Events", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("lists the key names of a Secret that lacks the signing key, never the values", func() {
		newSecret(ns, "acme-hook", map[string]string{"token": "token-value", "secret": "secret-value"})
		ep := newEndpoint(ns, "misnamed-key", "https://hooks.example.com/x", withSecret("acme-hook"))
		Eventually(getEndpoint(ep)).Should(HaveField("Status.Conditions", ContainElement(And(
			HaveField("Type", webhooksv1alpha1.ReadyCondition),
			HaveField("Reason", webhooksv1alpha1.SecretKeyMissingReason),
			HaveField("Message", `Secret "acme-hook" has no key "signingSecret" (it has: secret, token); `+
				`set spec.secretRef.key or add the key`)))))
	})

	It("reports a suspension with Normal Events, and a test webhook while suspended says how to resume", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "paused", recv.URL, suspended)
		resume := fmt.Sprintf(`resume it with kubectl -n %s patch webhookendpoint paused --type=merge -p '{"spec":{"suspend":false}}'`, ns)
		Eventually(endpointEvents(ns, ep.Name)).Should(haveEvent(corev1.EventTypeNormal, webhooksv1alpha1.SuspendedEvent))
		Expect(eventNotes(ns, ep.Name, webhooksv1alpha1.SuspendedEvent)(Default)).To(ConsistOf(ContainSubstring(resume)))

		By("a test webhook while suspended")
		annotate(ep, webhooksv1alpha1.TestRequestedAtAnnotation, "while-suspended")
		Eventually(getEndpoint(ep)).Should(And(
			HaveField("Status.LastTest.RequestedAt", "while-suspended"),
			HaveField("Status.LastTest.Success", false),
			HaveField("Status.LastTest.Error", And(
				HavePrefix("not sent: Suspended: endpoint is suspended (spec.suspend: true)"), ContainSubstring(resume)))))
		Expect(recv.received()).To(BeEmpty())

		By("resuming")
		patch := client.MergeFrom(ep.DeepCopy())
		ep.Spec.Suspend = false
		Expect(k8sClient.Patch(ctx, ep, patch)).To(Succeed())
		Eventually(endpointEvents(ns, ep.Name)).Should(haveEvent(corev1.EventTypeNormal, webhooksv1alpha1.ResumedEvent))
		Expect(getEndpoint(ep)(Default)).To(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionTrue,
			webhooksv1alpha1.ReadyReason))
		Consistently(endpointEvents(ns, ep.Name), 500*time.Millisecond).ShouldNot(Or(
			haveEvent(corev1.EventTypeWarning, webhooksv1alpha1.EndpointNotReadyEvent),
			haveEvent(corev1.EventTypeNormal, webhooksv1alpha1.EndpointReadyEvent)))
	})

	It("signs with a secret that ends in a newline as it is, and warns about it once", func() {
		recv := newReceiver(always(200))
		secret := newSecret(ns, "echoed", map[string]string{"signingSecret": "echoed-key\n"})
		ep := newEndpoint(ns, "newline", recv.URL, withSecret("echoed"))
		Eventually(getEndpoint(ep)).Should(HaveField("Status.Conditions", ContainElement(And(
			HaveField("Type", webhooksv1alpha1.ReadyCondition),
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Message", And(
				HavePrefix("endpoint accepts deliveries; warning: "),
				ContainSubstring(`key "signingSecret" in Secret "echoed" ends with a newline`),
				Not(ContainSubstring("echoed-key"))))))))
		Eventually(endpointEvents(ns, ep.Name)).Should(haveEvent(corev1.EventTypeWarning,
			webhooksv1alpha1.SecretEndsWithNewlineEvent))

		By("a test webhook, signed with the newline")
		annotate(ep, webhooksv1alpha1.TestRequestedAtAnnotation, "newline")
		Eventually(getEndpoint(ep)).Should(HaveField("Status.LastTest.Success", true))
		req := recv.received()[0]
		Expect(req.header.Get("X-Webhook-Signature")).To(Equal(
			independentSignature("echoed-key\n", req.header.Get("X-Webhook-Timestamp"), req.body)))
		Consistently(eventNotes(ns, ep.Name, webhooksv1alpha1.SecretEndsWithNewlineEvent), 500*time.Millisecond).
			Should(HaveLen(1))

		By("replacing the value with one without the newline")
		secret.StringData = map[string]string{"signingSecret": "echoed-key"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		Eventually(getEndpoint(ep)).Should(HaveField("Status.Conditions", ContainElement(And(
			HaveField("Type", webhooksv1alpha1.ReadyCondition),
			HaveField("Message", "endpoint accepts deliveries")))))
	})

	It("shows the URL with its credentials redacted in status.url and in the kubectl get URL column", func() {
		ep := newEndpoint(ns, "credentials", "http://user:s3cr3t@hooks.example.com/path?token=abc")
		const redacted = "http://***@hooks.example.com/path?token=***"
		Eventually(getEndpoint(ep)).Should(HaveField("Status.URL", redacted))
		Expect(printedColumns(ep)(Default)).To(HaveKeyWithValue("URL", redacted))
		Expect(getEndpoint(ep)(Default).Spec.URL).To(Equal("http://user:s3cr3t@hooks.example.com/path?token=abc"))

		for _, e := range endpointEvents(ns, ep.Name)(Default) {
			Expect(e.Note).NotTo(Or(ContainSubstring("s3cr3t"), ContainSubstring("abc")))
		}
		for _, c := range getEndpoint(ep)(Default).Status.Conditions {
			Expect(c.Message).NotTo(Or(ContainSubstring("s3cr3t"), ContainSubstring("abc")))
		}
	})
})

func TestDescribeKeysNamesAtMostTen(t *testing.T) {
	many := map[string][]byte{}
	for i := range 12 {
		many[fmt.Sprintf("key%02d", i)] = []byte("value")
	}
	tests := []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"none", nil, "it has no keys"},
		{"sorted", map[string][]byte{"token": nil, "secret": nil}, "it has: secret, token"},
		{"capped", many, "it has: " + strings.Join([]string{"key00", "key01", "key02", "key03", "key04",
			"key05", "key06", "key07", "key08", "key09"}, ", ") + " and 2 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeKeys(tt.data); got != tt.want {
				t.Errorf("describeKeys = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReadinessEvents follows one endpoint through readiness changes and checks the Events each
// reconcile emits: a suspension is Normal, and the newline warning is emitted when the Ready message
// starts to carry it, not on every reconcile.
func TestReadinessEvents(t *testing.T) {
	suspendedReadiness := engine.Readiness{Reason: webhooksv1alpha1.SuspendedReason, Message: "endpoint is suspended"}
	circuitOpen := engine.Readiness{Reason: webhooksv1alpha1.CircuitOpenReason, Message: "10 consecutive failed attempts"}
	secretMissing := engine.Readiness{Reason: webhooksv1alpha1.SecretNotFoundReason, Message: "Secret not found"}
	const newline = `the value of key "signingSecret" in Secret "s" ends with a newline`
	steps := []struct {
		name        string
		readiness   engine.Readiness
		newlineNote string
		want        []string
	}{
		{name: "first observation of a ready endpoint", readiness: ready},
		{name: "suspended", readiness: suspendedReadiness, want: []string{"Normal Suspended"}},
		{name: "still suspended", readiness: suspendedReadiness},
		{name: "resumed", readiness: ready, want: []string{"Normal Resumed"}},
		{name: "secret gains a newline", readiness: ready, newlineNote: newline,
			want: []string{"Warning SecretEndsWithNewline"}},
		{name: "newline again", readiness: ready, newlineNote: newline},
		{name: "circuit opens", readiness: circuitOpen, want: []string{"Warning EndpointNotReady"}},
		{name: "circuit closes, newline still there", readiness: ready, newlineNote: newline,
			want: []string{"Normal EndpointReady", "Warning SecretEndsWithNewline"}},
		{name: "suspended while not ready", readiness: suspendedReadiness, want: []string{"Normal Suspended"}},
		{name: "resumed into a missing Secret", readiness: secretMissing,
			want: []string{"Normal Resumed", "Warning EndpointNotReady"}},
		{name: "ready again", readiness: ready, want: []string{"Normal EndpointReady"}},
	}
	recorder := events.NewFakeRecorder(10)
	r := &WebhookEndpointReconciler{Recorder: recorder}
	ep := &webhooksv1alpha1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ep"}}
	for _, step := range steps {
		s := &endpointScope{ep: ep, readiness: step.readiness}
		r.setReadiness(s, step.newlineNote)
		for _, f := range s.afterPatch {
			f()
		}
		var got []string
		for len(recorder.Events) > 0 {
			fields := strings.Fields(<-recorder.Events)
			got = append(got, fields[0]+" "+fields[1])
		}
		if !slices.Equal(got, step.want) {
			t.Errorf("%s: Events %q, want %q", step.name, got, step.want)
		}
	}
}
