package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// renderKustomization builds a kustomize directory of the repository, as `kustomize build` would.
func renderKustomization(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := make([]*unstructured.Unstructured, 0, resMap.Size())
	for _, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// TestInstallManifestsPassServerSideDryRun renders config/default and applies every object to the
// test API server with a server-side dry-run, then checks the Pod's hardening both structurally and by
// letting the restricted Pod Security Standard admit (or refuse) a Pod built from the Deployment.
func TestInstallManifestsPassServerSideDryRun(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	objects := renderKustomization(t, "config/default")

	var deployment *appsv1.Deployment
	for _, obj := range objects {
		err := cluster.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.DryRunAll,
			client.ForceOwnership, client.FieldOwner("install-test"))
		g.Expect(err).NotTo(HaveOccurred(), "dry-run apply %s %s", obj.GetKind(), obj.GetName())
		if obj.GetKind() == "Deployment" {
			deployment = &appsv1.Deployment{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, deployment)).To(Succeed())
		}
	}
	g.Expect(deployment).NotTo(BeNil(), "config/default contains the manager Deployment")

	pod := deployment.Spec.Template.Spec
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(pod.Containers).To(HaveLen(1))
	sc := pod.Containers[0].SecurityContext
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
	g.Expect(pod.Containers[0].Args).To(ContainElement("--leader-elect"))
	g.Expect(pod.TerminationGracePeriodSeconds).To(HaveValue(BeNumerically(">", 70)),
		"the Pod waits longer than --graceful-shutdown-timeout so attempts in flight are recorded")

	const restricted = "e2e-restricted"
	g.Expect(cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   restricted,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}})).To(Succeed())
	managerPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: "manager"},
		Spec:       *pod.DeepCopy(),
	}
	managerPod.Spec.ServiceAccountName = ""
	g.Expect(cluster.Client.Create(ctx, managerPod, client.DryRunAll)).To(Succeed(),
		"the restricted Pod Security Standard admits the manager Pod")

	// The same check must be able to fail: a Pod that may escalate is refused.
	weakened := managerPod.DeepCopy()
	weakened.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err := cluster.Client.Create(ctx, weakened, client.DryRunAll)
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("allowPrivilegeEscalation"))

	expectLeastPrivilegeManagerRole(g, objects)
}

// expectLeastPrivilegeManagerRole checks the manager ClusterRole of rendered manifests: it exists, no
// rule uses a wildcard, and Secrets are read-only, since the manager only reads signing keys and TLS
// material and a write on Secrets would let it replace any tenant's key.
func expectLeastPrivilegeManagerRole(g Gomega, objects []*unstructured.Unstructured) {
	obj := findObject(objects, "ClusterRole", "manager-role")
	g.Expect(obj).NotTo(BeNil(), "the rendered manifests contain the manager ClusterRole")
	role := &rbacv1.ClusterRole{}
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, role)).To(Succeed())
	secretRules := 0
	for _, rule := range role.Rules {
		for _, field := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs} {
			g.Expect(field).NotTo(ContainElement("*"), "wildcard in rule %+v", rule)
		}
		if slices.Contains(rule.APIGroups, "") && slices.Contains(rule.Resources, "secrets") {
			secretRules++
			g.Expect(rule.Verbs).To(ConsistOf("get", "list", "watch"), "Secrets are read-only: %+v", rule)
		}
	}
	g.Expect(secretRules).NotTo(BeZero(), "a rule grants the manager its read access to Secrets")
}

// TestTracingComponentSetsTheOTLPEndpoint builds the install manifests with config/tracing, as the docs
// tell users to, and checks that the manager gets the OTLP variables.
func TestTracingComponentSetsTheOTLPEndpoint(t *testing.T) {
	g := NewWithT(t)
	for _, obj := range renderKustomization(t, "test/e2e/testdata/tracing-overlay") {
		if obj.GetKind() != "Deployment" {
			continue
		}
		deployment := &appsv1.Deployment{}
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, deployment)).To(Succeed())
		g.Expect(deployment.Spec.Template.Spec.Containers[0].Env).To(ContainElements(
			HaveField("Name", "OTEL_EXPORTER_OTLP_ENDPOINT"), HaveField("Name", "OTEL_EXPORTER_OTLP_PROTOCOL")))
		return
	}
	t.Fatal("no Deployment rendered")
}
