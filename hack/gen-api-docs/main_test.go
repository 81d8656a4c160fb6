package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is where the tests run from: go test runs in the package directory.
const repoRoot = "../.."

// TestAPIReferenceIsUpToDate fails when docs/api-reference.md is not what the generator makes from
// api/v1alpha1, so `make test` catches an API change without `make docs`.
func TestAPIReferenceIsUpToDate(t *testing.T) {
	want, err := Generate(filepath.Join(repoRoot, "api", "v1alpha1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(repoRoot, "docs", "api-reference.md"))
	if err != nil {
		t.Fatalf("%v: run `make docs`", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/api-reference.md is out of date: run `make docs` and commit the result\n%s", firstDifference(got, want))
	}
}

func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "first difference at line " + strconv.Itoa(i+1) + ":\n  file:      " + gl + "\n  generated: " + wl
		}
	}
	return ""
}

const fixture = `// Package v1 is a tiny API for the generator's tests.
// +groupName=example.com
package v1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Color names a color.
// +kubebuilder:validation:Enum=red;"green"
type Color string

// Colors.
const (
	// Red is warm.
	Red Color = "red"
	// Green is not.
	Green Color = "green"
)

// Reasons of the Ready condition. They never change.
const (
	// OKReason means all is well.
	OKReason = "OK"
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=wd

// Widget is a thing.
type Widget struct {
	metav1.TypeMeta   ` + "`json:\",inline\"`" + `
	metav1.ObjectMeta ` + "`json:\"metadata,omitempty\"`" + `

	// Spec is what the widget should be.
	// +required
	Spec WidgetSpec ` + "`json:\"spec\"`" + `
}

// WidgetSpec is the desired state of a Widget.
type WidgetSpec struct {
	// Size is how big the widget is.
	// It has a second line.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Size int32 ` + "`json:\"size,omitempty\"`" + `

	// Name is | piped.
	// +required
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[a-z]+(-[a-z]+)*$"
	Name string ` + "`json:\"name\"`" + `

	// Colors lists the colors.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	Colors []Color ` + "`json:\"colors,omitempty\"`" + `

	// Part is a nested part.
	Part *Part ` + "`json:\"part,omitempty\"`" + `

	// Wait is a duration.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="wait must be positive"
	Wait *metav1.Duration ` + "`json:\"wait,omitempty\"`" + `

	internal string
}

// Part is a part.
type Part struct {
	// Count is a plain field.
	Count int64 ` + "`json:\"count\"`" + `
}
`

func TestGenerateFixture(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "types.go"), []byte(fixture), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(out)
	for _, want := range []string{
		"# API reference: example.com/v1\n",
		"Package v1 is a tiny API for the generator's tests.\n",
		// Kind first, then its nested types in field order, then the named types.
		"- [Widget](#widget) (kind)\n- [WidgetSpec](#widgetspec)\n- [Part](#part)\n- [Color](#color)\n- [Constants](#constants)\n",
		"- Short name: `wd` (`kubectl get wd`)\n",
		"| `apiVersion` | string | yes |  | `example.com/v1` |\n",
		"| `kind` | string | yes |  | `Widget` |\n",
		"| `spec` | [WidgetSpec](#widgetspec) | yes |  | Spec is what the widget should be. |\n",
		// Markers become columns and validation; the doc comment loses them and joins its lines.
		"| `size` | integer (int32) | no | `3` | Size is how big the widget is. It has a second line. <br>Validation: 1 to 10. |\n",
		"| `name` | string | yes |  | Name is \\| piped. <br>Validation: at most 63 characters; pattern `^[a-z]+(-[a-z]+)*$`. |\n",
		// A named type's Enum applies to each item of a list of it.
		"| `colors` | array of [Color](#color) (string) | no |  | Colors lists the colors. <br>Validation: at most 4 items; each item one of `red`, `green`. |\n",
		// Without markers, omitempty means optional.
		"| `part` | [Part](#part) | no |  | Part is a nested part. |\n",
		"| `count` | integer (int64) | yes |  | Count is a plain field. |\n",
		"| `wait` | string (duration, for example `30s`) | no |  | Wait is a duration. <br>Validation: wait must be positive. |\n",
		"Underlying type: string. Validation: one of `red`, `green`.\n",
		"| `red` | Red is warm. |\n",
		"### Reasons of the Ready condition\n\nThey never change.\n",
		"| `OKReason` | `OK` | OKReason means all is well. |\n",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("output lacks %q\n--- output ---\n%s", want, doc)
		}
	}
	for _, unwanted := range []string{"internal", "+kubebuilder", "+optional"} {
		if strings.Contains(doc, unwanted) {
			t.Errorf("output contains %q", unwanted)
		}
	}

	again, err := Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, again) {
		t.Error("two runs gave different output")
	}
}

func TestGenerateNeedsGroupName(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "types.go"), []byte("package v1\n\n// T is a type.\ntype T struct{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir); err == nil {
		t.Fatal("want an error for a package without +groupName")
	}
}
