// Package docs_test keeps the hand-written documentation in step with the code: the manager flags in
// README.md, the metrics and alert runbooks in docs/operations.md, and the condition and Event reasons in
// docs/user-guide.md. (docs/api-reference.md is generated and checked by hack/gen-api-docs.)
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

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

// apiStrings returns the exported constants of api/v1alpha1/condition_types.go: the condition types and
// reasons, Event reasons, annotations and Secret keys that users see. Reading them from the source, not
// from a list kept here, means a new one cannot be left out of the check.
func apiStrings(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../api/v1alpha1/condition_types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !name.IsExported() {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("condition_types.go: %s is not a string literal; teach apiStrings to read it", name.Name)
				}
				values[name.Name], _ = strconv.Unquote(lit.Value)
			}
		}
	}
	if len(values) < 40 {
		t.Fatalf("found only %d constants in api/v1alpha1/condition_types.go: %v", len(values), values)
	}
	return values
}

func TestUserGuideCoversReasons(t *testing.T) {
	guide := read(t, "user-guide.md")
	values := apiStrings(t)
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !strings.Contains(guide, values[name]) {
			t.Errorf("docs/user-guide.md does not mention %s (%s)", values[name], name)
		}
	}
}
