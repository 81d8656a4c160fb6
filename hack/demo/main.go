// Command demo shows webhook-operator end to end on this machine: a local control plane, the manager
// binary running with its generated RBAC, a sample receiver that verifies every signature, and the
// samples from config/samples. It prints a summary and exits 0 when every event is Delivered, or keeps
// everything running with DEMO_KEEP=1. The manager's log goes to bin/demo-manager.log, which outlives the
// demo so that it can be read after a failure or a run that ended.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/pkg/signature"
)

const namespace = "demo"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "webhook-operator-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	step("Starting a local control plane (kube-apiserver and etcd from %s)", localcluster.AssetsDir())
	cluster, err := localcluster.Start(root)
	if err != nil {
		return err
	}
	defer func() { _ = cluster.Stop() }()

	step("Building the manager (go build ./cmd/manager)")
	binary, err := localcluster.BuildManager(ctx, root, work)
	if err != nil {
		return err
	}
	kubeconfig, err := cluster.ManagerKubeconfig(ctx, work)
	if err != nil {
		return err
	}
	// The log and the DEMO_KEEP kubeconfig go to bin/ (ignored by git) rather than to the temporary
	// folder, which is removed when the demo ends.
	keepDir := filepath.Join(root, "bin")
	if err := os.MkdirAll(keepDir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(keepDir, "demo-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	step("Starting the manager as its own process, allowed only what config/rbac grants, with\n"+
		"    --allowed-cidrs=127.0.0.0/8 so that it may deliver to the receivers on loopback (refused by default)\n"+
		"    Manager log: %s", logPath)
	manager, err := localcluster.StartManager(ctx, binary, kubeconfig, logFile, "--leader-elect")
	if err != nil {
		return withLog(err, logPath)
	}
	defer func() { _ = manager.Stop(15 * time.Second) }()

	secret, err := sampleSigningSecret(filepath.Join(root, "config", "samples", "signing_secret.yaml"))
	if err != nil {
		return err
	}
	recv, err := startReceiver(secret, 0)
	if err != nil {
		return err
	}
	defer func() { _ = recv.server.Close() }()
	step("Sample receiver listening on %s; it verifies X-Webhook-Signature on every request", recv.url)
	flaky, err := startReceiver(secret, 2)
	if err != nil {
		return err
	}
	defer func() { _ = flaky.server.Close() }()
	step("Flaky receiver listening on %s; it answers 503 twice, then accepts", flaky.url)

	step("Applying config/samples in namespace %q (endpoint URL pointed at the sample receiver)", namespace)
	if err := applySamples(ctx, cluster.Client, filepath.Join(root, "config", "samples"), recv.url); err != nil {
		return err
	}
	step("Adding an endpoint for bank statements on the flaky receiver, and one bank statement")
	if err := applyFlaky(ctx, cluster.Client, flaky.url); err != nil {
		return err
	}

	step("Waiting for every DocumentEvent to finish")
	if _, err := waitFinished(ctx, cluster.Client, ""); err != nil {
		return withLog(err, logPath)
	}

	step("Sending a test webhook to orders-receiver (annotation %s)", webhooksv1alpha1.TestRequestedAtAnnotation)
	lastTest, err := requestTest(ctx, cluster.Client, "orders-receiver")
	if err != nil {
		return withLog(err, logPath)
	}

	step("Redelivering doc-invoice-1042 (annotation %s)", webhooksv1alpha1.RedeliverRequestedAtAnnotation)
	if err := annotate(ctx, cluster.Client, &webhooksv1alpha1.DocumentEvent{}, "doc-invoice-1042",
		webhooksv1alpha1.RedeliverRequestedAtAnnotation, "demo"); err != nil {
		return err
	}
	events, err := waitFinished(ctx, cluster.Client, "demo")
	if err != nil {
		return withLog(err, logPath)
	}

	printSummary(events, lastTest, recv, flaky)
	for _, ev := range events {
		if ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered {
			return withLog(fmt.Errorf("event %s ended %s", ev.Name, ev.Status.Phase), logPath)
		}
	}
	if !lastTest.Success {
		return withLog(fmt.Errorf("the test webhook failed: %s", lastTest.Error), logPath)
	}
	if n := recv.rejectedCount() + flaky.rejectedCount(); n > 0 {
		return fmt.Errorf("the receivers rejected %d requests", n)
	}

	if os.Getenv("DEMO_KEEP") == "" {
		step("Done: every event was Delivered and every signature verified. Manager log: %s\n"+
			"    Set DEMO_KEEP=1 to keep it running.", logPath)
		return nil
	}
	return keepRunning(ctx, cluster, keepDir, logPath)
}

func withLog(err error, logPath string) error {
	out, _ := os.ReadFile(logPath)
	return fmt.Errorf("%w\n--- manager log (%s) ---\n%s", err, logPath, out)
}

func sampleSigningSecret(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{}
	if err := utilyaml.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	value := s.StringData[webhooksv1alpha1.DefaultSigningSecretKey]
	if value == "" {
		return nil, fmt.Errorf("%s has no stringData.%s", path, webhooksv1alpha1.DefaultSigningSecretKey)
	}
	return []byte(value), nil
}

// receiver is a sample receiver: it accepts a request only when its signature verifies, after
// answering 503 to the first failFirst requests.
type receiver struct {
	server    *http.Server
	url       string
	failFirst int

	mu       sync.Mutex
	seen     int
	verified map[string]int // deliveries received per X-Webhook-Id
	rejected int
}

func startReceiver(secret []byte, failFirst int) (*receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/webhook", failFirst: failFirst, verified: map[string]int{}}
	r.server = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		var payload struct {
			Event      string `json:"event"`
			DocumentID string `json:"documentId"`
		}
		_ = json.Unmarshal(body, &payload)
		id := req.Header.Get(signature.HeaderID)
		if err := signature.Verify(secret, req.Header, body); err != nil {
			r.mu.Lock()
			r.rejected++
			r.mu.Unlock()
			fmt.Printf("    receiver %s: %s %s REJECTED: %v\n", r.url, payload.Event, payload.DocumentID, err)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		test := ""
		if req.Header.Get("X-Webhook-Test") == "true" {
			test = " [test webhook]"
		}
		r.mu.Lock()
		r.seen++
		if r.seen <= r.failFirst {
			r.mu.Unlock()
			fmt.Printf("    receiver %s: %s %s signature OK, answering 503 (planned failure %d of %d)\n",
				r.url, payload.Event, payload.DocumentID, r.seen, r.failFirst)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		r.verified[id]++
		r.mu.Unlock()
		fmt.Printf("    receiver %s: %s %s signature OK%s (X-Webhook-Id %s)\n", r.url, payload.Event, payload.DocumentID, test, id)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"received": true, "message": "Webhook processed successfully"}`))
	})}
	go func() { _ = r.server.Serve(l) }()
	return r, nil
}

func (r *receiver) receipts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verified[id]
}

func (r *receiver) rejectedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

func applySamples(ctx context.Context, c client.Client, dir, receiverURL string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	// Secrets and endpoints first, so events find their targets at once.
	order := map[string]int{"Secret": 0, "WebhookEndpoint": 1, "DocumentEvent": 2}
	var objects []*unstructured.Unstructured
	for _, file := range files {
		if filepath.Base(file) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := decoder.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("parse %s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			objects = append(objects, obj)
		}
	}
	for pass := 0; pass <= 2; pass++ {
		for _, obj := range objects {
			if order[obj.GetKind()] != pass {
				continue
			}
			obj.SetNamespace(namespace)
			if obj.GetKind() == "WebhookEndpoint" {
				if err := unstructured.SetNestedField(obj.Object, receiverURL, "spec", "url"); err != nil {
					return err
				}
			}
			if err := c.Create(ctx, obj); err != nil {
				return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
			}
			fmt.Printf("    created %s/%s\n", strings.ToLower(obj.GetKind()), obj.GetName())
		}
	}
	return nil
}

// applyFlaky adds an endpoint on the flaky receiver for bank statements only, so the samples do not go
// there, and one bank statement event.
func applyFlaky(ctx context.Context, c client.Client, url string) error {
	endpoint := &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "statements-receiver"},
		Spec: webhooksv1alpha1.WebhookEndpointSpec{
			URL:       url,
			SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: "webhook-signing-secret"},
			DocTypes:  []string{"BANK_STATEMENT"},
			Retry: &webhooksv1alpha1.RetryPolicy{
				InitialInterval: &metav1.Duration{Duration: 500 * time.Millisecond},
			},
		},
	}
	event := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "doc-statement-2024-01"},
		Spec: webhooksv1alpha1.DocumentEventSpec{
			DocumentID:     "doc_statement_2024_01",
			DocumentStatus: webhooksv1alpha1.DocumentStatus{DocType: ptr.To("BANK_STATEMENT")},
		},
	}
	for _, obj := range []client.Object{endpoint, event} {
		if err := c.Create(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

func annotate(ctx context.Context, c client.Client, obj client.Object, name, key, value string) error {
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		return err
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[key] = value
	obj.SetAnnotations(annotations)
	return c.Patch(ctx, obj, patch)
}

func requestTest(ctx context.Context, c client.Client, endpoint string) (*webhooksv1alpha1.TestResult, error) {
	value := time.Now().UTC().Format(time.RFC3339Nano)
	if err := annotate(ctx, c, &webhooksv1alpha1.WebhookEndpoint{}, endpoint, webhooksv1alpha1.TestRequestedAtAnnotation, value); err != nil {
		return nil, err
	}
	var result *webhooksv1alpha1.TestResult
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ep := &webhooksv1alpha1.WebhookEndpoint{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: endpoint}, ep); err != nil {
			return false, err
		}
		result = ep.Status.LastTest
		return result != nil && result.RequestedAt == value, nil
	})
	return result, err
}

// waitFinished waits until every event is Delivered or Failed and, when redelivery is set, has acted on
// that redelivery request if it was asked for one.
func waitFinished(ctx context.Context, c client.Client, redelivery string) ([]webhooksv1alpha1.DocumentEvent, error) {
	var events []webhooksv1alpha1.DocumentEvent
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &webhooksv1alpha1.DocumentEventList{}
		if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return false, err
		}
		events = list.Items
		for _, ev := range events {
			if ev.Status.Phase != webhooksv1alpha1.DocumentEventDelivered && ev.Status.Phase != webhooksv1alpha1.DocumentEventFailed {
				return false, nil
			}
			if redelivery != "" && ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] == redelivery &&
				ev.Status.LastRedeliveryRequest != redelivery {
				return false, nil
			}
		}
		return len(events) > 0, nil
	})
	return events, err
}

func printSummary(events []webhooksv1alpha1.DocumentEvent, lastTest *webhooksv1alpha1.TestResult, receivers ...*receiver) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "EVENT\tDOCUMENT\tTYPE\tPHASE\tENDPOINT\tATTEMPTS\tHTTP\tRECEIVED (VERIFIED)\tNOTE")
	for _, ev := range events {
		docType := "-"
		if t := ev.Spec.DocumentStatus.DocType; t != nil {
			docType = *t
		}
		for _, d := range ev.Status.Deliveries {
			received := 0
			for _, r := range receivers {
				received += r.receipts(d.DeliveryID)
			}
			note := ""
			switch {
			case ev.Status.LastRedeliveryRequest != "":
				note = "redelivered on request, same X-Webhook-Id"
			case d.Attempts > 1:
				note = "delivered after " + delivery.Count(d.Attempts-1, "failed attempt")
			}
			_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", ev.Name, ev.Spec.DocumentID, docType,
				ev.Status.Phase, d.Endpoint, d.Attempts, d.LastStatusCode, received, note)
		}
	}
	if lastTest != nil {
		result := "ok"
		if !lastTest.Success {
			result = "failed: " + lastTest.Error
		}
		if lastTest.Duration != nil {
			result += ", " + delivery.FormatDuration(lastTest.Duration.Duration)
		}
		_, _ = fmt.Fprintf(w, "(test webhook)\ttest_...\tINVOICE\t-\torders-receiver\t1\t%d\t1\t%s\n",
			lastTest.StatusCode, result)
	}
	_ = w.Flush()
	fmt.Println()
}

func keepRunning(ctx context.Context, cluster *localcluster.Cluster, keepDir, logPath string) error {
	admin, err := cluster.Env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	path := filepath.Join(keepDir, "demo.kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return err
	}
	step("Still running (DEMO_KEEP=1). Try:\n"+
		"    kubectl --kubeconfig %[1]s -n %[2]s get whe,de\n"+
		"    tail -f %[3]s\n"+
		"Open the web console (after make install-plugin; or go run ./cmd/kubectl-webhook ui -n %[2]s --kubeconfig %[1]s):\n"+
		"    KUBECONFIG=%[1]s kubectl webhook ui -n %[2]s\n"+
		"Press Ctrl-C to stop.",
		path, namespace, logPath)
	<-ctx.Done()
	return nil
}
