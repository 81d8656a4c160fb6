package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/internal/routing"
)

var (
	cluster *localcluster.Cluster
	// k acts as the cluster administrator; the tests use it to seed objects and to play the operator.
	k          client.Client
	kubeconfig string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kubectl-webhook-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if cluster, err = localcluster.Start(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	k = cluster.Client

	admin, err := cluster.Env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "add admin user:", err)
		return 1
	}
	config, err := admin.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "admin kubeconfig:", err)
		return 1
	}
	kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, config, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// result is the outcome of one in-process run of the plugin.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit code %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// kubectlWebhook runs the plugin in-process as the administrator, with stdin as standard input.
func kubectlWebhook(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	code := run(ctx, streams, append(append([]string{}, args...), "--kubeconfig", kubeconfig))
	r := result{stdout: out.String(), stderr: errOut.String(), code: code}
	t.Logf("kubectl webhook %s\n%s", strings.Join(args, " "), r)
	return r
}

// mustSucceed fails the test unless the run exited 0.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("expected exit code 0, got %s", r)
	}
}

// mustFail fails the test unless the run exited non-zero with want in its stdout or stderr.
func mustFail(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("expected a non-zero exit code, got %s", r)
	}
	if !strings.Contains(r.stdout+r.stderr, want) {
		t.Fatalf("expected %q in the output, got %s", want, r)
	}
}

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kw-"}}
	if err := k.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Delete(context.Background(), ns) })
	return ns.Name
}

func newEndpoint(t *testing.T, ns, name string) *webhooksv1alpha1.WebhookEndpoint {
	t.Helper()
	ep := &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       webhooksv1alpha1.WebhookEndpointSpec{URL: "https://hooks.example.com/" + name},
	}
	if err := k.Create(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

// newEvent creates a DocumentEvent and, unless status is nil, writes its status as the operator would.
// A delivery without an id gets the one the operator gives it: from the UIDs of the event and of the
// endpoint of that name, or, when no such endpoint exists, of an endpoint that no longer does.
func newEvent(t *testing.T, ns, name string, status *webhooksv1alpha1.DocumentEventStatus) *webhooksv1alpha1.DocumentEvent {
	t.Helper()
	ctx := context.Background()
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       webhooksv1alpha1.DocumentEventSpec{DocumentID: "doc_" + name},
	}
	if err := k.Create(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		before := ev.DeepCopy()
		ev.Status = *status.DeepCopy()
		for i := range ev.Status.Deliveries {
			d := &ev.Status.Deliveries[i]
			if d.DeliveryID != "" {
				continue
			}
			endpointUID := types.UID("deleted-" + d.Endpoint)
			ep := &webhooksv1alpha1.WebhookEndpoint{}
			if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: d.Endpoint}, ep); err == nil {
				endpointUID = ep.UID
			}
			d.DeliveryID = routing.DeliveryID(ev.UID, endpointUID)
		}
		if err := k.Status().Patch(ctx, ev, client.MergeFrom(before)); err != nil {
			t.Fatalf("patch status of %s: %v", name, err)
		}
	}
	return ev
}

// eventStatus builds a status with one delivery per "endpoint=Phase" or "endpoint=Phase:Reason" pair;
// newEvent gives the deliveries their ids.
func eventStatus(phase webhooksv1alpha1.DocumentEventPhase, deliveries ...string) *webhooksv1alpha1.DocumentEventStatus {
	st := &webhooksv1alpha1.DocumentEventStatus{Phase: phase}
	for _, d := range deliveries {
		endpoint, state, _ := strings.Cut(d, "=")
		deliveryPhase, reason, _ := strings.Cut(state, ":")
		delivery := webhooksv1alpha1.EndpointDelivery{
			Endpoint: endpoint,
			Phase:    webhooksv1alpha1.DeliveryPhase(deliveryPhase),
			Reason:   reason,
		}
		if delivery.Phase != webhooksv1alpha1.DeliveryPending {
			delivery.Attempts = 1
		}
		st.Deliveries = append(st.Deliveries, delivery)
	}
	return st
}

func getEvent(t *testing.T, ns, name string) *webhooksv1alpha1.DocumentEvent {
	t.Helper()
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func getEndpoint(t *testing.T, ns, name string) *webhooksv1alpha1.WebhookEndpoint {
	t.Helper()
	ep := &webhooksv1alpha1.WebhookEndpoint{}
	if err := k.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestUsageErrors(t *testing.T) {
	mustFail(t, kubectlWebhook(t, "", "no-such-command"), "unknown command")
	mustFail(t, kubectlWebhook(t, "", "test"), "exactly one WebhookEndpoint")
	mustFail(t, kubectlWebhook(t, "", "status", "extra"), "takes no arguments")
	mustFail(t, kubectlWebhook(t, "", "test", "x", "--bogus"), "unknown flag: --bogus")

	r := kubectlWebhook(t, "", "--help")
	mustSucceed(t, r)
	for _, want := range []string{"kubectl webhook", "redeliver", "status", "verify", "send", "test", "--kubeconfig", "--namespace"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
