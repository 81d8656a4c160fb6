package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	helmRelease   = "webhook-operator"
	helmNamespace = "webhook-operator-helm"
)

// prometheusOperatorKinds are rendered by the chart on request only: they need the Prometheus Operator
// CRDs, which the test API server does not have.
var prometheusOperatorKinds = map[string]bool{"ServiceMonitor": true, "PrometheusRule": true}

// prometheusOperatorOptIn are the values that turn the Prometheus Operator objects on.
var prometheusOperatorOptIn = map[string]any{
	"serviceMonitor": map[string]any{"enabled": true},
	"prometheusRule": map[string]any{"enabled": true},
}

// monitoringObjects returns "Kind name" of the objects in the monitoring.coreos.com API group, which a
// cluster without the Prometheus Operator rejects.
func monitoringObjects(objects []*unstructured.Unstructured) []string {
	var found []string
	for _, obj := range objects {
		if obj.GroupVersionKind().Group == "monitoring.coreos.com" {
			found = append(found, obj.GetKind()+" "+obj.GetName())
		}
	}
	return found
}

// clusterCapabilities describes the test API server to the Helm engine, so that the chart's kubeVersion
// constraint is checked against a real version.
func clusterCapabilities(t *testing.T) *chartutil.Capabilities {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	return &chartutil.Capabilities{
		KubeVersion: chartutil.KubeVersion{Version: info.GitVersion, Major: info.Major, Minor: info.Minor},
		APIVersions: chartutil.DefaultVersionSet,
		HelmVersion: chartutil.DefaultCapabilities.HelmVersion,
	}
}

// renderChart renders dist/chart with the Helm SDK, as `helm template` would, and returns the objects
// of every template, sorted by template and position.
func renderChart(t *testing.T, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	ch, err := loader.Load(repoPath(t, "dist", "chart"))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	renderValues, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{
		Name: helmRelease, Namespace: helmNamespace, Revision: 1, IsInstall: true,
	}, clusterCapabilities(t))
	if err != nil {
		return nil, err
	}
	rendered, err := engine.Render(ch, renderValues)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rendered))
	for name := range rendered {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || (path.Ext(base) != ".yaml" && path.Ext(base) != ".yml") {
			continue // partials and NOTES.txt
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var objects []*unstructured.Unstructured
	for _, name := range names {
		for _, doc := range readYAMLDocs(t, []byte(rendered[name])) {
			objects = append(objects, &unstructured.Unstructured{Object: doc})
		}
	}
	return objects, nil
}

// chartCRDs returns the CustomResourceDefinitions of the chart's crds/ folder.
func chartCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	ch, err := loader.Load(repoPath(t, "dist", "chart"))
	if err != nil {
		t.Fatal(err)
	}
	var objects []*unstructured.Unstructured
	for _, crd := range ch.CRDObjects() {
		for _, doc := range readYAMLDocs(t, crd.File.Data) {
			objects = append(objects, &unstructured.Unstructured{Object: doc})
		}
	}
	return objects
}

// dryRunApply applies every object to the test API server with a server-side dry-run. Objects whose
// kind the server does not know are returned instead, if they are Prometheus Operator kinds.
func dryRunApply(t *testing.T, g Gomega, owner string, objects []*unstructured.Unstructured) (skipped []string) {
	t.Helper()
	ctx := context.Background()
	for _, obj := range objects {
		gvk := obj.GroupVersionKind()
		if _, err := cluster.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			g.Expect(meta.IsNoMatchError(err)).To(BeTrue(), "REST mapping of %s: %v", gvk, err)
			g.Expect(prometheusOperatorKinds).To(HaveKey(gvk.Kind), "only Prometheus Operator kinds may be unknown")
			skipped = append(skipped, gvk.Kind)
			continue
		}
		// Apply a copy: the client writes the server's answer back into the object.
		err := cluster.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.DryRunAll,
			client.ForceOwnership, client.FieldOwner(owner))
		g.Expect(err).NotTo(HaveOccurred(), "dry-run apply %s %s", obj.GetKind(), obj.GetName())
	}
	return skipped
}

func ensureNamespace(t *testing.T, name string, namespaceLabels map[string]string) {
	t.Helper()
	err := cluster.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: namespaceLabels}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func findObject(objects []*unstructured.Unstructured, kind, nameSuffix string) *unstructured.Unstructured {
	for _, obj := range objects {
		if obj.GetKind() == kind && strings.HasSuffix(obj.GetName(), nameSuffix) {
			return obj
		}
	}
	return nil
}

func kindCounts(objects []*unstructured.Unstructured) map[string]int {
	counts := map[string]int{}
	for _, obj := range objects {
		counts[obj.GetKind()]++
	}
	return counts
}

// managerFlags returns the flags the built manager binary defines, from its -help output.
func managerFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, _ := exec.Command(binary, "-help").CombinedOutput() // -help exits 0 or 2 depending on Go version
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["leader-elect"] {
		t.Fatalf("could not read the manager's flags:\n%s", out)
	}
	return flags
}

// configManagerDeployment returns the manager Deployment of config/manager/manager.yaml.
func configManagerDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	for _, doc := range readYAMLDocs(t, mustRead(t, repoPath(t, "config", "manager", "manager.yaml"))) {
		if doc["kind"] == "Deployment" {
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(doc, d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatal("config/manager/manager.yaml has no Deployment")
	return nil
}

func toDeployment(t *testing.T, obj *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// checkManagerDeployment checks what every rendering of the chart must keep: the hardening of
// config/manager/manager.yaml, the graceful shutdown budget, the service account and real flags.
func checkManagerDeployment(t *testing.T, g Gomega, objects []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	obj := findObject(objects, "Deployment", "-controller-manager")
	g.Expect(obj).NotTo(BeNil())
	return checkDeployment(t, g, obj)
}

// checkDeployment runs the checks of checkManagerDeployment on one manager Deployment of the chart, the
// main one or a shard's.
func checkDeployment(t *testing.T, g Gomega, obj *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	deployment := toDeployment(t, obj)
	reference := configManagerDeployment(t)
	pod, refPod := deployment.Spec.Template.Spec, reference.Spec.Template.Spec

	g.Expect(pod.SecurityContext).To(Equal(refPod.SecurityContext), "pod securityContext as in config/manager/manager.yaml")
	g.Expect(pod.Containers).To(HaveLen(1))
	container := pod.Containers[0]
	g.Expect(container.Name).To(Equal("manager"))
	g.Expect(container.SecurityContext).To(Equal(refPod.Containers[0].SecurityContext),
		"container securityContext as in config/manager/manager.yaml")
	g.Expect(container.LivenessProbe).To(Equal(refPod.Containers[0].LivenessProbe))
	g.Expect(container.ReadinessProbe).To(Equal(refPod.Containers[0].ReadinessProbe))
	g.Expect(container.Command).To(Equal([]string{"/manager"}))
	g.Expect(pod.TerminationGracePeriodSeconds).To(HaveValue(BeNumerically("==", 80)))
	g.Expect(pod.ServiceAccountName).To(Equal(helmRelease + "-controller-manager"))
	g.Expect(deployment.Spec.Selector.MatchLabels).To(Equal(deployment.Spec.Template.Labels))

	flags := managerFlags(t)
	for _, arg := range container.Args {
		name, _, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		g.Expect(flags).To(HaveKey(name), "the manager defines the flag of %q", arg)
	}
	return deployment
}

// TestHelmChartRendersAndPassesServerSideDryRun renders dist/chart with its default values and with
// non-default sets, checks the key fields, and server-side dry-run applies every object and CRD. The
// default must install on a plain cluster, so it renders nothing of the Prometheus Operator.
func TestHelmChartRendersAndPassesServerSideDryRun(t *testing.T) {
	ensureNamespace(t, helmNamespace, nil)
	values := readYAMLDocs(t, mustRead(t, repoPath(t, "dist", "chart", "values.yaml")))[0]
	image := values["image"].(map[string]any)
	wantImage := image["repository"].(string) + ":" + image["tag"].(string)

	t.Run("CRDs", func(t *testing.T) {
		g := NewWithT(t)
		crds := chartCRDs(t)
		g.Expect(crds).To(HaveLen(2))
		g.Expect(dryRunApply(t, g, "helm-test", crds)).To(BeEmpty())
	})

	t.Run("DefaultValues", func(t *testing.T) {
		g := NewWithT(t)
		objects, err := renderChart(t, nil)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kindCounts(objects)).To(Equal(map[string]int{
			"ServiceAccount": 1, "ClusterRole": 3, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1,
			"Deployment": 1, "Service": 1,
		}))
		g.Expect(monitoringObjects(objects)).To(BeEmpty(), "the default values must install without the Prometheus Operator")
		for _, obj := range objects {
			g.Expect(obj.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/instance", helmRelease), obj.GetName())
			if obj.GetKind() != "ClusterRole" && obj.GetKind() != "ClusterRoleBinding" {
				g.Expect(obj.GetNamespace()).To(Equal(helmNamespace), obj.GetName())
			}
		}

		deployment := checkManagerDeployment(t, g, objects)
		container := deployment.Spec.Template.Spec.Containers[0]
		g.Expect(container.Image).To(Equal(wantImage))
		g.Expect(container.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
		g.Expect(*deployment.Spec.Replicas).To(BeEquivalentTo(1))
		g.Expect(container.Args).To(ContainElements(
			"--leader-elect", "--health-probe-bind-address=:8081", "--metrics-bind-address=:8443",
			"--metrics-secure=true", "--max-in-flight=512", "--block-private-networks=true", "--require-https=false"))
		g.Expect(container.Args).NotTo(ContainElement(HavePrefix("--watch-namespaces")))
		g.Expect(container.Args).NotTo(ContainElement(HavePrefix("--blocked-cidrs")))
		// Not sharded: the manager serves every object and uses the default Lease.
		g.Expect(container.Args).NotTo(ContainElement(HavePrefix("--watch-label-selector")))
		g.Expect(container.Args).NotTo(ContainElement(HavePrefix("--leader-election-id")))
		g.Expect(container.Resources.Limits.Memory().String()).To(Equal("256Mi"))

		// The metrics Service selects the manager Pods on the HTTPS port.
		service := findObject(objects, "Service", "-metrics-service")
		g.Expect(service).NotTo(BeNil())
		selector, _, _ := unstructured.NestedStringMap(service.Object, "spec", "selector")
		g.Expect(selector).To(Equal(deployment.Spec.Selector.MatchLabels))
		ports, _, _ := unstructured.NestedSlice(service.Object, "spec", "ports")
		g.Expect(ports).To(ConsistOf(And(HaveKeyWithValue("name", "https"), HaveKeyWithValue("port", BeNumerically("==", 8443)))))

		// Every binding names the chart's service account in the release namespace.
		for _, obj := range objects {
			if !strings.HasSuffix(obj.GetKind(), "Binding") {
				continue
			}
			subjects, _, _ := unstructured.NestedSlice(obj.Object, "subjects")
			g.Expect(subjects).To(ConsistOf(And(
				HaveKeyWithValue("name", deployment.Spec.Template.Spec.ServiceAccountName),
				HaveKeyWithValue("namespace", helmNamespace))), obj.GetName())
			roleName, _, _ := unstructured.NestedString(obj.Object, "roleRef", "name")
			g.Expect(findObject(objects, strings.TrimSuffix(obj.GetKind(), "Binding"), roleName)).NotTo(BeNil(),
				"%s refers to a role of the chart", obj.GetName())
		}

		g.Expect(dryRunApply(t, g, "helm-test", objects)).To(BeEmpty())
		t.Logf("default values: %d objects, all applied with a server-side dry-run", len(objects))

		// The restricted Pod Security Standard admits the chart's manager Pod.
		const restricted = "helm-restricted"
		ensureNamespace(t, restricted, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: "manager"},
			Spec:       *deployment.Spec.Template.Spec.DeepCopy(),
		}
		pod.Spec.ServiceAccountName = ""
		g.Expect(cluster.Client.Create(context.Background(), pod, client.DryRunAll)).To(Succeed())
	})

	t.Run("PrometheusOperatorOptIn", func(t *testing.T) {
		g := NewWithT(t)
		objects, err := renderChart(t, prometheusOperatorOptIn)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(monitoringObjects(objects)).To(ConsistOf(
			"ServiceMonitor "+helmRelease+"-metrics-monitor", "PrometheusRule "+helmRelease+"-alerts"))

		// The ServiceMonitor selects the metrics Service, on the endpoint of config/prometheus/monitor.yaml.
		service := findObject(objects, "Service", "-metrics-service")
		g.Expect(service).NotTo(BeNil())
		monitor := findObject(objects, "ServiceMonitor", "-metrics-monitor")
		g.Expect(monitor.GetNamespace()).To(Equal(helmNamespace))
		monitorSelector, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
		g.Expect(monitorSelector).NotTo(BeEmpty())
		for k, v := range monitorSelector {
			g.Expect(service.GetLabels()).To(HaveKeyWithValue(k, v))
		}
		endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
		configMonitor := readYAMLDocs(t, mustRead(t, repoPath(t, "config", "prometheus", "monitor.yaml")))[0]
		wantEndpoints, _, _ := unstructured.NestedSlice(configMonitor, "spec", "endpoints")
		g.Expect(endpoints).To(Equal(wantEndpoints), "the ServiceMonitor endpoint of config/prometheus/monitor.yaml")

		// The PrometheusRule carries the alerts of config/prometheus/alerts.yaml untouched: Helm must not
		// have evaluated the Prometheus templates in the annotations.
		rule := findObject(objects, "PrometheusRule", "-alerts")
		g.Expect(rule.GetNamespace()).To(Equal(helmNamespace))
		configRule := readYAMLDocs(t, mustRead(t, repoPath(t, "config", "prometheus", "alerts.yaml")))[0]
		g.Expect(rule.Object["spec"]).To(Equal(configRule["spec"]))
		g.Expect(prometheusRules(t, []map[string]any{rule.Object})).To(ContainElement(
			HaveField("Annotations", HaveKeyWithValue("description", ContainSubstring("{{ $value")))))

		g.Expect(dryRunApply(t, g, "helm-test", objects)).To(ConsistOf("ServiceMonitor", "PrometheusRule"))
	})

	t.Run("CustomValues", func(t *testing.T) {
		g := NewWithT(t)
		// Read like `helm install -f custom.yaml`: numbers arrive as float64.
		custom, err := chartutil.ReadValues([]byte(`
watchNamespaces: [a, b]
egress:
  blockPrivateNetworks: false
  allowedCIDRs: [10.20.0.0/16]
  privateCIDRs: [10.0.0.0/8]
prometheusRule:
  enabled: true
requireHTTPS: true
maxInFlight: 1000000
defaultTTLAfterFinished: 168h
replicaCount: 2
image:
  tag: v9.9.9
  pullPolicy: Always
`))
		g.Expect(err).NotTo(HaveOccurred())
		objects, err := renderChart(t, custom)
		g.Expect(err).NotTo(HaveOccurred())
		counts := kindCounts(objects)
		g.Expect(counts).NotTo(HaveKey("ServiceMonitor"))
		g.Expect(counts).To(HaveKeyWithValue("PrometheusRule", 1))

		deployment := checkManagerDeployment(t, g, objects)
		container := deployment.Spec.Template.Spec.Containers[0]
		g.Expect(container.Args).To(ContainElements(
			"--leader-elect", "--watch-namespaces=a,b", "--block-private-networks=false", "--allowed-cidrs=10.20.0.0/16",
			"--private-cidrs=10.0.0.0/8",
			"--require-https=true", "--max-in-flight=1000000", "--default-ttl-after-finished=168h"))
		g.Expect(container.Args).NotTo(ContainElement("--block-private-networks=true"))
		g.Expect(container.Image).To(Equal(image["repository"].(string) + ":v9.9.9"))
		g.Expect(container.ImagePullPolicy).To(Equal(corev1.PullAlways))
		g.Expect(*deployment.Spec.Replicas).To(BeEquivalentTo(2))

		skipped := dryRunApply(t, g, "helm-test", objects)
		g.Expect(skipped).To(ConsistOf("PrometheusRule"))
		t.Logf("custom values: %d objects, %d applied with a server-side dry-run, skipped (no CRD) %v",
			len(objects), len(objects)-len(skipped), skipped)
	})

	t.Run("Tracing", func(t *testing.T) {
		g := NewWithT(t)
		env := func(values map[string]any) []corev1.EnvVar {
			objects, err := renderChart(t, values)
			g.Expect(err).NotTo(HaveOccurred())
			return checkManagerDeployment(t, g, objects).Spec.Template.Spec.Containers[0].Env
		}
		g.Expect(env(nil)).To(BeEmpty(), "no tracing unless asked for")
		g.Expect(env(map[string]any{"tracing": map[string]any{
			"otlpEndpoint": "http://otel-collector.observability:4318",
			"env":          map[string]any{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
		}})).To(ConsistOf(
			corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "http://otel-collector.observability:4318"},
			corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: "http/protobuf"},
			corev1.EnvVar{Name: "OTEL_TRACES_SAMPLER", Value: "parentbased_traceidratio"},
			corev1.EnvVar{Name: "OTEL_TRACES_SAMPLER_ARG", Value: "0.1"},
		))
	})

	t.Run("InsecureMetricsWithServiceMonitor", func(t *testing.T) {
		g := NewWithT(t)
		objects, err := renderChart(t, map[string]any{
			"metrics":        map[string]any{"secure": false, "port": 8080},
			"serviceMonitor": map[string]any{"enabled": true},
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kindCounts(objects)).To(HaveKeyWithValue("ClusterRole", 1), "no metrics auth roles for plain HTTP")
		monitor := findObject(objects, "ServiceMonitor", "-metrics-monitor")
		g.Expect(monitor).NotTo(BeNil())
		endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
		g.Expect(endpoints).To(ConsistOf(And(HaveKeyWithValue("port", "http"), HaveKeyWithValue("scheme", "http"))))
		deployment := checkManagerDeployment(t, g, objects)
		g.Expect(deployment.Spec.Template.Spec.Containers[0].Args).To(ContainElements(
			"--metrics-bind-address=:8080", "--metrics-secure=false"))
		g.Expect(dryRunApply(t, g, "helm-test", objects)).To(ConsistOf("ServiceMonitor"))
	})

	t.Run("MetricsDisabled", func(t *testing.T) {
		g := NewWithT(t)
		// Asked for, the ServiceMonitor is still left out: it would select no Service.
		objects, err := renderChart(t, map[string]any{
			"metrics":        map[string]any{"enabled": false},
			"serviceMonitor": map[string]any{"enabled": true},
		})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(kindCounts(objects)).NotTo(HaveKey("Service"))
		g.Expect(kindCounts(objects)).NotTo(HaveKey("ServiceMonitor"))
		deployment := checkManagerDeployment(t, g, objects)
		g.Expect(deployment.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--metrics-bind-address=0"))
	})

	t.Run("GrafanaDashboard", func(t *testing.T) {
		g := NewWithT(t)
		objects, err := renderChart(t, map[string]any{"grafanaDashboard": map[string]any{"enabled": true}})
		g.Expect(err).NotTo(HaveOccurred())
		cm := findObject(objects, "ConfigMap", "-dashboard")
		g.Expect(cm).NotTo(BeNil())
		g.Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
		data, _, _ := unstructured.NestedString(cm.Object, "data", "webhook-operator.json")
		g.Expect(data).To(Equal(strings.TrimSuffix(string(mustRead(t, repoPath(t, "config", "prometheus", "dashboard.json"))), "\n")))
		g.Expect(dryRunApply(t, g, "helm-test", []*unstructured.Unstructured{cm})).To(BeEmpty())
	})

	t.Run("Shards", func(t *testing.T) {
		g := NewWithT(t)
		defaults, err := renderChart(t, prometheusOperatorOptIn)
		g.Expect(err).NotTo(HaveOccurred())
		objects, err := renderChart(t, map[string]any{
			"sharding":       map[string]any{"key": shardKey, "shards": []any{"a", "b"}},
			"serviceMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
		})
		g.Expect(err).NotTo(HaveOccurred())

		// One Deployment and one metrics Service more per shard; everything else is shared.
		wantCounts := kindCounts(defaults)
		wantCounts["Deployment"] += 2
		wantCounts["Service"] += 2
		g.Expect(kindCounts(objects)).To(Equal(wantCounts))

		manager := helmRelease + "-controller-manager"
		deployments := map[string]*appsv1.Deployment{}
		for _, obj := range objects {
			if obj.GetKind() == "Deployment" {
				deployments[obj.GetName()] = checkDeployment(t, g, obj)
			}
		}
		g.Expect(deployments).To(HaveKey(manager))
		g.Expect(deployments).To(HaveKey(manager + "-a"))
		g.Expect(deployments).To(HaveKey(manager + "-b"))

		// Each Deployment serves its own part of the objects and elects its leader through its own Lease;
		// the main one keeps the default Lease, so that turning shards on does not give it a second leader.
		wantSelector := map[string]string{
			manager:        "!" + shardKey,
			manager + "-a": shardKey + "=a",
			manager + "-b": shardKey + "=b",
		}
		leases := map[string]string{}
		for name, d := range deployments {
			args := d.Spec.Template.Spec.Containers[0].Args
			g.Expect(flagValues(args, "watch-label-selector")).To(Equal([]string{wantSelector[name]}), name)
			g.Expect(args).To(ContainElement("--leader-elect"), name)
			lease := "webhook-operator.webhooks.1flow.io" // the manager's default
			if ids := flagValues(args, "leader-election-id"); len(ids) > 0 {
				g.Expect(ids).To(HaveLen(1), name)
				lease = ids[0]
			}
			g.Expect(leases).NotTo(HaveKey(lease), "%s and %s share the Lease %s", name, leases[lease], lease)
			leases[lease] = name
		}
		g.Expect(leases).To(HaveKeyWithValue("webhook-operator.webhooks.1flow.io", manager))
		g.Expect(leases).To(HaveKeyWithValue(helmRelease+"-a", manager+"-a"))
		g.Expect(leases).To(HaveKeyWithValue(helmRelease+"-b", manager+"-b"))

		// The main Deployment is the one of an unsharded release but for the selector, and a shard's Pod is
		// the main one's but for its labels and arguments: one template renders them all.
		plain := findObject(defaults, "Deployment", "-controller-manager")
		g.Expect(plain).NotTo(BeNil())
		withoutArgs := func(d *appsv1.Deployment) *appsv1.Deployment {
			d = d.DeepCopy()
			d.Spec.Template.Spec.Containers[0].Args = slices.DeleteFunc(d.Spec.Template.Spec.Containers[0].Args,
				func(arg string) bool {
					return strings.HasPrefix(arg, "--watch-label-selector=") || strings.HasPrefix(arg, "--leader-election-id=")
				})
			return d
		}
		g.Expect(withoutArgs(deployments[manager])).To(Equal(toDeployment(t, plain)))
		for _, shard := range []string{"a", "b"} {
			d := deployments[manager+"-"+shard]
			g.Expect(d.Labels).To(HaveKeyWithValue(shardKey, shard))
			g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(shardKey, shard))
			g.Expect(withoutArgs(d).Spec.Template.Spec.Containers).To(Equal(withoutArgs(deployments[manager]).Spec.Template.Spec.Containers))
			shardPod, mainPod := d.Spec.Template.Spec.DeepCopy(), deployments[manager].Spec.Template.Spec.DeepCopy()
			shardPod.Containers, mainPod.Containers = nil, nil
			g.Expect(shardPod).To(Equal(mainPod))
		}

		// No Deployment selects another one's Pods, and each metrics Service selects the Pods of exactly
		// one Deployment, its own; the ServiceMonitor selects every metrics Service.
		for name, d := range deployments {
			selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			g.Expect(err).NotTo(HaveOccurred())
			for other, o := range deployments {
				g.Expect(selector.Matches(labels.Set(o.Spec.Template.Labels))).To(Equal(name == other),
					"the selector of %s and the Pods of %s", name, other)
			}
		}
		monitor := findObject(objects, "ServiceMonitor", "-metrics-monitor")
		g.Expect(monitor).NotTo(BeNil())
		monitorSelector, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
		services := 0
		for _, obj := range objects {
			if obj.GetKind() != "Service" {
				continue
			}
			services++
			g.Expect(labels.SelectorFromSet(monitorSelector).Matches(labels.Set(obj.GetLabels()))).To(BeTrue(),
				"the ServiceMonitor selects %s", obj.GetName())
			selector, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "selector")
			var selected []string
			for name, d := range deployments {
				if labels.SelectorFromSet(selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					selected = append(selected, name)
				}
			}
			owner := manager + strings.TrimPrefix(obj.GetName(), helmRelease+"-metrics-service")
			g.Expect(selected).To(ConsistOf(owner), "the Pods %s selects", obj.GetName())
		}
		g.Expect(services).To(Equal(3))

		g.Expect(dryRunApply(t, g, "helm-test", objects)).To(ConsistOf("ServiceMonitor", "PrometheusRule"))

		// The chart's leader election Role lets the service account take every one of these Leases: apply
		// the Role and its binding for real and ask the API server's RBAC authorizer.
		ctx := context.Background()
		for _, kind := range []string{"Role", "RoleBinding"} {
			obj := findObject(objects, kind, "-leader-election-"+strings.ToLower(kind))
			g.Expect(obj).NotTo(BeNil())
			g.Expect(cluster.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
				client.ForceOwnership, client.FieldOwner("helm-test"))).To(Succeed())
			t.Cleanup(func() { _ = cluster.Client.Delete(ctx, obj.DeepCopy()) })
		}
		serviceAccount := "system:serviceaccount:" + helmNamespace + ":" + deployments[manager].Spec.Template.Spec.ServiceAccountName
		allowed := func(group, resource, verb, name string) bool {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   serviceAccount,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + helmNamespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: helmNamespace, Verb: verb, Group: group, Resource: resource, Name: name,
				},
			}}
			g.Expect(cluster.Client.Create(ctx, review)).To(Succeed())
			return review.Status.Allowed
		}
		// The Role's other rule (Events) tells when the authorizer has seen the Role.
		g.Eventually(func() bool { return allowed("", "events", "create", "") }).WithTimeout(10*time.Second).Should(BeTrue(),
			"the RBAC authorizer sees the applied Role")
		for lease, name := range leases {
			for _, verb := range []string{"get", "create", "update"} {
				g.Expect(allowed("coordination.k8s.io", "leases", verb, lease)).To(BeTrue(),
					"%s may %s the Lease %s of %s", serviceAccount, verb, lease, name)
			}
		}
		g.Expect(allowed("coordination.k8s.io", "leasecandidates", "update", helmRelease+"-a")).To(BeFalse(),
			"the authorizer refuses what the Role does not grant, so the checks above mean something")
	})

	t.Run("ShardValuesAreChecked", func(t *testing.T) {
		for _, c := range []struct {
			name, values, err string
		}{
			{"Duplicate", "sharding: {shards: [a, a]}", `"a" is listed twice`},
			{"NotADNSLabel", "sharding: {shards: [Shard_A]}", `"Shard_A" is not a shard name`},
			{"NoKey", `sharding: {key: "", shards: [a]}`, "is not a label key"},
			{"ExtraArgsSelector", "sharding: {shards: [a]}\nextraArgs: [--watch-label-selector=team=x]", "extraArgs sets --watch-label-selector"},
			{"TooLong", "sharding: {shards: [" + strings.Repeat("x", 40) + "]}", "longer than 63 characters"},
		} {
			t.Run(c.name, func(t *testing.T) {
				g := NewWithT(t)
				values, err := chartutil.ReadValues([]byte(c.values))
				g.Expect(err).NotTo(HaveOccurred())
				_, err = renderChart(t, values)
				g.Expect(err).To(MatchError(ContainSubstring(c.err)))
			})
		}
	})

	t.Run("SeveralReplicasNeedLeaderElection", func(t *testing.T) {
		g := NewWithT(t)
		_, err := renderChart(t, map[string]any{"replicaCount": 2, "leaderElection": map[string]any{"enabled": false}})
		g.Expect(err).To(MatchError(ContainSubstring("needs leaderElection.enabled")))
	})
}

// shardKey is the label the chart's sharding values assign objects to shards by in these tests.
const shardKey = "webhooks.1flow.io/shard"

// flagValues returns the values of every --name=value argument of args, in order.
func flagValues(args []string, name string) []string {
	var values []string
	for _, arg := range args {
		if v, ok := strings.CutPrefix(arg, "--"+name+"="); ok {
			values = append(values, v)
		}
	}
	return values
}

// TestHelmChartLint runs `helm lint` (the Helm SDK's linter) on dist/chart: Chart.yaml, values, templates
// and the rendered YAML. Informational messages (such as a missing icon) are logged, not failed.
func TestHelmChartLint(t *testing.T) {
	g := NewWithT(t)
	caps := clusterCapabilities(t)
	linter := lint.AllWithKubeVersion(repoPath(t, "dist", "chart"), nil, helmNamespace, &caps.KubeVersion)
	for _, msg := range linter.Messages {
		t.Logf("helm lint: %s", msg)
	}
	g.Expect(linter.HighestSeverity).To(BeNumerically("<", support.WarningSev), "helm lint reports warnings or errors")
}

// TestHelmChartClusterRoleMatchesGeneratedRBAC compares the rules of the chart's manager ClusterRole with
// config/rbac/role.yaml, which controller-gen generates from the code markers, so they cannot drift.
func TestHelmChartClusterRoleMatchesGeneratedRBAC(t *testing.T) {
	expectChartRulesMatchConfig(t, "ClusterRole", "-manager-role", "role.yaml", "run make helm-chart")
}

// TestHelmChartLeaderElectionRoleMatchesConfig compares the rules of the chart's leader-election Role,
// which the chart's template spells out, with config/rbac/leader_election_role.yaml.
func TestHelmChartLeaderElectionRoleMatchesConfig(t *testing.T) {
	expectChartRulesMatchConfig(t, "Role", "-leader-election-role", "leader_election_role.yaml",
		"edit dist/chart/templates/leader-election-rbac.yaml")
}

// expectChartRulesMatchConfig renders dist/chart with its default values and checks that the object of
// the kind whose name ends in nameSuffix has the rules of config/rbac/configFile.
func expectChartRulesMatchConfig(t *testing.T, kind, nameSuffix, configFile, fix string) {
	t.Helper()
	g := NewWithT(t)
	objects, err := renderChart(t, nil)
	g.Expect(err).NotTo(HaveOccurred())
	role := findObject(objects, kind, nameSuffix)
	g.Expect(role).NotTo(BeNil(), "dist/chart renders no %s named *%s", kind, nameSuffix)
	config := readYAMLDocs(t, mustRead(t, repoPath(t, "config", "rbac", configFile)))
	g.Expect(config).To(HaveLen(1))
	g.Expect(config[0]["rules"]).NotTo(BeEmpty())
	g.Expect(role.Object["rules"]).To(Equal(config[0]["rules"]),
		"dist/chart's %s %s differs from config/rbac/%s: %s", kind, role.GetName(), configFile, fix)
}

// TestHelmChartCopiesMatchConfig checks that the files `make helm-chart` copies into dist/chart are the
// same as their sources in config/: the CRDs, the generated ClusterRole and the Prometheus files.
func TestHelmChartCopiesMatchConfig(t *testing.T) {
	g := NewWithT(t)
	compareDirs := func(src, dst, pattern string) {
		srcFiles, err := filepath.Glob(repoPath(t, src, pattern))
		g.Expect(err).NotTo(HaveOccurred())
		dstFiles, err := filepath.Glob(repoPath(t, dst, pattern))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(srcFiles).NotTo(BeEmpty())
		base := func(paths []string) []string {
			out := make([]string, 0, len(paths))
			for _, p := range paths {
				out = append(out, filepath.Base(p))
			}
			return out
		}
		g.Expect(base(dstFiles)).To(Equal(base(srcFiles)), "%s holds the files of %s: run make helm-chart", dst, src)
		for _, f := range srcFiles {
			g.Expect(string(mustRead(t, filepath.Join(repoPath(t, dst), filepath.Base(f))))).To(Equal(string(mustRead(t, f))),
				"%s/%s is a copy of %s: run make helm-chart", dst, filepath.Base(f), f)
		}
	}
	compareDirs("config/crd/bases", "dist/chart/crds", "*.yaml")
	for _, name := range []string{"monitor.yaml", "alerts.yaml", "dashboard.json"} {
		compareDirs("config/prometheus", "dist/chart/files/prometheus", name)
	}
	compareDirs("config/rbac", "dist/chart/files/rbac", "role.yaml")
}

// makefileVar reads a `NAME ?= value` assignment of the Makefile.
func makefileVar(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*\?=\s*(\S+)\s*$`).FindSubmatch(mustRead(t, repoPath(t, "Makefile")))
	if m == nil {
		t.Fatalf("the Makefile does not set %s", name)
	}
	return string(m[1])
}

// TestChartInstallYAMLAndMakefileVersionsAgree checks that the Makefile's VERSION, the one place the
// release version is set, is the version of dist/install.yaml, of the chart and of config/manager.
func TestChartInstallYAMLAndMakefileVersionsAgree(t *testing.T) {
	g := NewWithT(t)
	version := makefileVar(t, "VERSION")
	g.Expect(version).To(MatchRegexp(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`))
	img := strings.ReplaceAll(makefileVar(t, "IMG"), "$(VERSION)", version)
	g.Expect(img).To(HaveSuffix(":" + version))

	chartYAML := readYAMLDocs(t, mustRead(t, repoPath(t, "dist", "chart", "Chart.yaml")))[0]
	g.Expect(chartYAML).To(HaveKeyWithValue("appVersion", version), "Chart.yaml appVersion: run make helm-chart")
	g.Expect(chartYAML).To(HaveKeyWithValue("version", strings.TrimPrefix(version, "v")), "Chart.yaml version: run make helm-chart")
	values := readYAMLDocs(t, mustRead(t, repoPath(t, "dist", "chart", "values.yaml")))[0]
	image := values["image"].(map[string]any)
	g.Expect(image["repository"].(string)+":"+image["tag"].(string)).To(Equal(img), "values.yaml image: run make helm-chart")

	kustomization := readYAMLDocs(t, mustRead(t, repoPath(t, "config", "manager", "kustomization.yaml")))[0]
	g.Expect(kustomization["images"]).To(ContainElement(And(
		HaveKeyWithValue("name", "controller"),
		HaveKeyWithValue("newName", strings.TrimSuffix(img, ":"+version)),
		HaveKeyWithValue("newTag", version))), "config/manager/kustomization.yaml: run make build-installer")

	var images []string
	for _, doc := range readYAMLDocs(t, mustRead(t, repoPath(t, "dist", "install.yaml"))) {
		if doc["kind"] != "Deployment" {
			continue
		}
		d := &appsv1.Deployment{}
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(doc, d)).To(Succeed())
		for _, c := range d.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
	}
	g.Expect(images).To(Equal([]string{img}), "dist/install.yaml image: run make build-installer")
}

// TestInstallYAMLPassesServerSideDryRun applies every object of dist/install.yaml to the test API server
// with a server-side dry-run, and checks that it is what config/default renders today.
func TestInstallYAMLPassesServerSideDryRun(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(repoPath(t, "dist", "install.yaml"))
	g.Expect(err).NotTo(HaveOccurred(), "run make build-installer")
	docs := readYAMLDocs(t, data)
	objects := make([]*unstructured.Unstructured, 0, len(docs))
	for _, doc := range docs {
		objects = append(objects, &unstructured.Unstructured{Object: doc})
	}
	counts := kindCounts(objects)
	g.Expect(counts).To(HaveKeyWithValue("CustomResourceDefinition", 2))
	g.Expect(counts).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(counts).To(HaveKeyWithValue("Namespace", 1))

	g.Expect(dryRunApply(t, g, "install-yaml-test", objects)).To(BeEmpty())

	// dist/install.yaml is what `kustomize build config/default` renders today (in any order).
	rendered := renderKustomization(t, "config/default")
	key := func(obj *unstructured.Unstructured) string {
		return obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()
	}
	inFile := map[string]*unstructured.Unstructured{}
	for _, obj := range objects {
		inFile[key(obj)] = obj
	}
	g.Expect(objects).To(HaveLen(len(rendered)), "dist/install.yaml is stale: run make build-installer")
	for _, want := range rendered {
		got, ok := inFile[key(want)]
		g.Expect(ok).To(BeTrue(), "dist/install.yaml lacks %s: run make build-installer", key(want))
		if diff := jsonDiff(t, got.Object, want.Object); diff != "" {
			t.Errorf("dist/install.yaml is stale (%s), run make build-installer:\n%s", key(want), diff)
		}
	}
	t.Logf("dist/install.yaml: %d objects applied with a server-side dry-run: %v", len(objects), counts)
}

// jsonDiff returns "" when a and b are the same JSON, else the first differing line of their indented
// JSON with some context.
func jsonDiff(t *testing.T, got, want any) string {
	t.Helper()
	gotJSON, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	gotLines, wantLines := strings.Split(string(gotJSON), "\n"), strings.Split(string(wantJSON), "\n")
	for i := 0; i < len(gotLines) || i < len(wantLines); i++ {
		if i < len(gotLines) && i < len(wantLines) && gotLines[i] == wantLines[i] {
			continue
		}
		around := func(lines []string) string {
			return strings.Join(lines[max(0, i-3):min(len(lines), i+3)], "\n")
		}
		return fmt.Sprintf("line %d\n--- have:\n%s\n--- want:\n%s", i+1, around(gotLines), around(wantLines))
	}
	return ""
}
