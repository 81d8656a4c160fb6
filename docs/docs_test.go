// Package docs_test keeps the hand-written documentation in step with the code: the manager flags in
// README.md, the metrics and alert runbooks in docs/operations.md, and the condition and Event reasons in
// docs/user-guide.md. (docs/api-reference.md is generated and checked by hack/gen-api-docs.)
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/metrics"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// managerFlags returns the flags that cmd/manager/main.go defines with the flag package.
func managerFlags(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../cmd/manager/main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || identName(sel.X) != "flag" || len(call.Args) < 2 {
			return true
		}
		arg := call.Args[0]
		if strings.HasSuffix(sel.Sel.Name, "Var") {
			arg = call.Args[1]
		}
		if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			name, _ := strconv.Unquote(lit.Value)
			names = append(names, name)
		}
		return true
	})
	if len(names) < 10 {
		t.Fatalf("found only %d flags in cmd/manager/main.go: %v", len(names), names)
	}
	sort.Strings(names)
	return names
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// Flags that the manager gets from libraries: controller-runtime's --kubeconfig and the zap options.
var libraryFlags = map[string]bool{
	"kubeconfig": true, "zap-devel": true, "zap-encoder": true, "zap-log-level": true,
	"zap-stacktrace-level": true, "zap-time-encoding": true,
}

func TestReadmeFlagTableMatchesManager(t *testing.T) {
	readme := read(t, "../README.md")
	defined := map[string]bool{}
	for _, name := range managerFlags(t) {
		defined[name] = true
		if !strings.Contains(readme, "`--"+name+"`") {
			t.Errorf("README.md does not list the manager flag --%s", name)
		}
	}
	// Every flag in the table's first column must exist.
	flagRef := regexp.MustCompile("`--([a-z0-9-]+)`")
	listed := 0
	for _, line := range strings.Split(readme, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range flagRef.FindAllStringSubmatch(first, -1) {
			listed++
			if !defined[m[1]] && !libraryFlags[m[1]] {
				t.Errorf("README.md lists --%s, which cmd/manager/main.go does not define", m[1])
			}
		}
	}
	if listed == 0 {
		t.Error("README.md has no manager flag table")
	}
}

func TestOperationsDocumentsEveryMetric(t *testing.T) {
	ops := read(t, "operations.md")
	for _, name := range metrics.Names {
		if !strings.Contains(ops, "| `"+name+"` |") {
			t.Errorf("docs/operations.md has no row for the metric %s", name)
		}
	}
}

// The alerts' runbook_url points at docs/operations.md#<alert name in lowercase>, which is GitHub's
// anchor for a heading that is exactly the alert name.
func TestOperationsHasARunbookForEveryAlert(t *testing.T) {
	ops := read(t, "operations.md")
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)\s*$`).FindAllStringSubmatch(read(t, "../config/prometheus/alerts.yaml"), -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts found in config/prometheus/alerts.yaml")
	}
	for _, a := range alerts {
		if !regexp.MustCompile(`(?m)^#{2,4} ` + regexp.QuoteMeta(a[1]) + `$`).MatchString(ops) {
			t.Errorf("docs/operations.md has no heading %q (the runbook anchor #%s)", a[1], strings.ToLower(a[1]))
		}
	}
}

func TestUserGuideCoversReasons(t *testing.T) {
	guide := read(t, "user-guide.md")
	for _, reason := range []string{
		// Events
		webhooksv1alpha1.DeliveryFailedEvent, webhooksv1alpha1.DeliveredAfterRetriesEvent,
		webhooksv1alpha1.EndpointNotReadyEvent, webhooksv1alpha1.EndpointReadyEvent,
		webhooksv1alpha1.CircuitOpenedEvent, webhooksv1alpha1.CircuitClosedEvent, webhooksv1alpha1.SuspendedEvent,
		webhooksv1alpha1.ResumedEvent, webhooksv1alpha1.SecretEndsWithNewlineEvent, webhooksv1alpha1.InvalidTraceContextEvent,
		// Ready reasons of a WebhookEndpoint
		webhooksv1alpha1.SecretNotFoundReason, webhooksv1alpha1.SecretKeyMissingReason,
		webhooksv1alpha1.SecretInvalidReason, webhooksv1alpha1.InvalidURLReason, webhooksv1alpha1.SuspendedReason,
		webhooksv1alpha1.InsecureURLReason, webhooksv1alpha1.DestinationBlockedReason,
		webhooksv1alpha1.TLSSecretNotFoundReason, webhooksv1alpha1.TLSSecretInvalidReason,
		webhooksv1alpha1.CircuitOpenReason,
		// Delivery reasons
		webhooksv1alpha1.AttemptFailedReason, webhooksv1alpha1.AttemptsExhaustedReason,
		webhooksv1alpha1.EndpointDeletedReason, webhooksv1alpha1.RedeliveryRequestedReason,
		webhooksv1alpha1.EndpointNotReadyReason, webhooksv1alpha1.NoEndpointsReason, webhooksv1alpha1.TooManyEndpointsReason,
		// Annotations
		webhooksv1alpha1.TestRequestedAtAnnotation, webhooksv1alpha1.RedeliverRequestedAtAnnotation,
		webhooksv1alpha1.RedeliverScopeAnnotation, webhooksv1alpha1.TraceParentAnnotation, webhooksv1alpha1.TraceStateAnnotation,
	} {
		if !strings.Contains(guide, reason) {
			t.Errorf("docs/user-guide.md does not mention %s", reason)
		}
	}
}
