package controller

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/pkg/signature"
)

func certPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

var _ = Describe("Security", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("stores a receiver's answer without control characters or bidi overrides", func() {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, "bad\x1b[2J\u009b31mrequest\u202e evil\u2066x\u2069")
		}))
		DeferCleanup(srv.Close)
		newEndpoint(ns, "hostile", srv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) { ep.Spec.Retry = fastRetry(1) })
		ev := newEvent(ns, "hostile-answer")

		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventFailed))
		lastError := getEvent(ev)(Default).Status.Deliveries[0].LastError
		Expect(lastError).To(Equal("HTTP 400 Bad Request: bad [2J 31mrequest  evil x"))
	})

	It("never reads or signs with a Secret from another namespace", func() {
		other := newNamespace()
		newSecret(other, "shared-name", map[string]string{"signingSecret": "tenant-b-secret"})
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "tenant-a", recv.URL, withSecret("shared-name"))
		ev := newEvent(ns, "tenant-a-doc")

		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SecretNotFoundReason))
		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("Reason", webhooksv1alpha1.EndpointNotReadyReason))))
		Consistently(func() int { return len(recv.received()) }, time.Second).Should(BeZero(),
			"a Secret of the same name in another namespace must not be used")
	})

	It("trusts a private CA from spec.tls.caSecretRef, and picks up a fixed CA without a restart", func() {
		var served atomic.Int32
		ca, otherCA := newTestCA("receiver-ca"), newTestCA("unrelated-ca")
		srv := newTLSReceiver(ca, nil, &served)

		caSecret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "receiver-ca"},
			Data:       map[string][]byte{"ca.crt": otherCA.pem()},
		}
		Expect(k8sClient.Create(ctx, caSecret)).To(Succeed())
		newEndpoint(ns, "private-ca", srv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.TLS = &webhooksv1alpha1.EndpointTLS{CASecretRef: &webhooksv1alpha1.LocalSecretReference{Name: "receiver-ca"}}
			ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
				MaxAttempts:     50,
				InitialInterval: &metav1.Duration{Duration: 100 * time.Millisecond},
				MaxInterval:     &metav1.Duration{Duration: 200 * time.Millisecond},
			}
		})
		ev := newEvent(ns, "over-tls")
		Eventually(getEvent(ev)).Should(HaveField("Status.Deliveries", ContainElement(And(
			HaveField("Phase", webhooksv1alpha1.DeliveryRetrying),
			HaveField("LastError", ContainSubstring("certificate"))))))
		Expect(served.Load()).To(BeZero(), "an untrusted server never gets the payload")

		caSecret.Data = map[string][]byte{"ca.crt": ca.pem()}
		Expect(k8sClient.Update(ctx, caSecret)).To(Succeed())
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(served.Load()).To(Equal(int32(1)))
	})

	It("presents the client certificate from spec.tls.clientCertSecretRef to a receiver that requires mTLS", func() {
		var served atomic.Int32
		ca, clientCA := newTestCA("receiver-ca"), newTestCA("client-ca")
		srv := newTLSReceiver(ca, clientCA, &served)
		clientCert, clientKey := clientCA.issue("webhook-operator", x509.ExtKeyUsageClientAuth)

		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "receiver-ca"},
			Data:       map[string][]byte{"ca.crt": ca.pem()},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client-cert"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": clientCert, "tls.key": clientKey},
		})).To(Succeed())
		ep := newEndpoint(ns, "mtls", srv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.TLS = &webhooksv1alpha1.EndpointTLS{CASecretRef: &webhooksv1alpha1.LocalSecretReference{Name: "receiver-ca"}}
		})
		first := newEvent(ns, "without-client-cert")
		Eventually(getEvent(first)).Should(HaveField("Status.Deliveries", ContainElement(
			HaveField("LastError", ContainSubstring("certificate")))))
		Expect(served.Load()).To(BeZero(), "the receiver refuses a client without a certificate")

		patch := client.MergeFrom(ep.DeepCopy())
		ep.Spec.TLS.ClientCertSecretRef = &webhooksv1alpha1.LocalSecretReference{Name: "client-cert"}
		Expect(k8sClient.Patch(ctx, ep, patch)).To(Succeed())
		second := newEvent(ns, "with-client-cert")
		for _, ev := range []*webhooksv1alpha1.DocumentEvent{first, second} {
			Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		}
		Expect(served.Load()).To(Equal(int32(2)))
	})

	It("reports a missing TLS Secret on the endpoint and holds deliveries", func() {
		recv := newReceiver(always(200))
		ep := newEndpoint(ns, "tls-missing", recv.URL, func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.TLS = &webhooksv1alpha1.EndpointTLS{CASecretRef: &webhooksv1alpha1.LocalSecretReference{Name: "nope"}}
		})
		newEvent(ns, "held-for-tls")
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.TLSSecretNotFoundReason))
		Consistently(func() int { return len(recv.received()) }, 500*time.Millisecond).Should(BeZero())
	})

	It("signs with the standard-webhooks scheme, with both keys during a rotation", func() {
		recv := newReceiver(always(200))
		newSecret(ns, "rotating", map[string]string{
			"signingSecret":         "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"previousSigningSecret": "whsec_cGxlYXNlLXJvdGF0ZS1tZQ==",
		})
		newEndpoint(ns, "standard", recv.URL, withSecret("rotating"), func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Signature = &webhooksv1alpha1.SignaturePolicy{Scheme: webhooksv1alpha1.SignatureSchemeStandardWebhooks}
		})
		ev := newEvent(ns, "standard-signed")
		Eventually(getEvent(ev)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))

		req := recv.received()[0]
		Expect(req.header.Get("webhook-id")).To(Equal(getEvent(ev)(Default).Status.Deliveries[0].DeliveryID))
		Expect(req.header.Values("webhook-signature")[0]).To(MatchRegexp(`^v1,\S+ v1,\S+$`))
		for _, key := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_cGxlYXNlLXJvdGF0ZS1tZQ=="} {
			Expect(signature.VerifyStandard([]byte(key), req.header, req.body)).To(Succeed())
		}
		Expect(signature.VerifyStandard([]byte("whsec_b3RoZXIta2V5"), req.header, req.body)).NotTo(Succeed())
	})

	It("reports a whsec_ secret that is not base64 as SecretInvalid instead of sending", func() {
		recv := newReceiver(always(200))
		newSecret(ns, "broken", map[string]string{"signingSecret": "whsec_***not-base64***"})
		ep := newEndpoint(ns, "broken-key", recv.URL, withSecret("broken"), func(ep *webhooksv1alpha1.WebhookEndpoint) {
			ep.Spec.Signature = &webhooksv1alpha1.SignaturePolicy{Scheme: webhooksv1alpha1.SignatureSchemeStandardWebhooks}
		})
		newEvent(ns, "unsignable")
		Eventually(getEndpoint(ep)).Should(haveCondition(webhooksv1alpha1.ReadyCondition, metav1.ConditionFalse,
			webhooksv1alpha1.SecretInvalidReason))
		Expect(getEndpoint(ep)(Default).Status.Conditions[0].Message).NotTo(ContainSubstring("not-base64"))
		Consistently(func() int { return len(recv.received()) }, 500*time.Millisecond).Should(BeZero())
	})

	It("accepts an event of 1 MiB and rejects one over etcd's 1.5 MiB request limit", func() {
		recv := newReceiver(always(200))
		newEndpoint(ns, "big", recv.URL)
		big := newEvent(ns, "near-limit", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{Fields: jsonObject("blob", 1<<20)}
		})
		Eventually(getEvent(big)).Should(havePhase(webhooksv1alpha1.DocumentEventDelivered))
		Expect(len(recv.received()[0].body)).To(BeNumerically(">", 1<<20))

		err := k8sClient.Create(ctx, eventObject(ns, "over-limit", func(ev *webhooksv1alpha1.DocumentEvent) {
			ev.Spec.Extraction = &webhooksv1alpha1.Extraction{Fields: jsonObject("blob", 3<<19+64<<10)} // 1.56 MiB
		}))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("etcdserver: request is too large"))
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "over-limit"}, &webhooksv1alpha1.DocumentEvent{})).NotTo(Succeed())
	})
})
