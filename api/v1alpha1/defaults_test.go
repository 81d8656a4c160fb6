package v1alpha1

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// crdBases holds the CRDs that `make manifests` generates from the markers in this package.
const crdBases = "../../config/crd/bases"

// defaultCheck ties one defaulted CRD property to the Go code that applies the same default when the
// field is empty (objects built in Go, or read from a cluster whose CRD predates the default).
type defaultCheck struct {
	// getter names that code, for messages.
	getter string
	// want is what the getter returns on an empty object. The CRD default is decoded into the same Go
	// type (a time.Duration from a duration string) and must be equal.
	want any
	// check replaces want for a default that no getter applies.
	check func(raw []byte) error
}

// defaultChecks lists, by kind and by path in the openAPIV3Schema ("[]" for list items, "{}" for map
// values), every property that carries a default. TestCRDDefaultsMatchGetters fails on a CRD default
// that is missing here, so a new +kubebuilder:default cannot be added without its Go counterpart.
var defaultChecks = map[string]map[string]defaultCheck{
	"WebhookEndpoint": {
		"spec.timeout":               {getter: "GetTimeout", want: (&WebhookEndpoint{}).GetTimeout()},
		"spec.maxInFlight":           {getter: "GetMaxInFlight", want: (&WebhookEndpoint{}).GetMaxInFlight()},
		"spec.retry.maxAttempts":     {getter: "GetMaxAttempts", want: (&WebhookEndpoint{}).GetMaxAttempts()},
		"spec.retry.initialInterval": {getter: "GetInitialInterval", want: (&WebhookEndpoint{}).GetInitialInterval()},
		"spec.retry.maxInterval":     {getter: "GetMaxInterval", want: (&WebhookEndpoint{}).GetMaxInterval()},
		"spec.circuitBreaker.failureThreshold": {
			getter: "GetFailureThreshold", want: (&WebhookEndpoint{}).GetFailureThreshold(),
		},
		"spec.circuitBreaker.cooldown": {getter: "GetCooldown", want: (&WebhookEndpoint{}).GetCooldown()},
		"spec.secretRef.key":           {getter: "GetSecretKey", want: (&WebhookEndpoint{}).GetSecretKey()},
		"spec.signature.scheme":        {getter: "GetSignatureScheme", want: (&WebhookEndpoint{}).GetSignatureScheme()},
		"status":                       {getter: "none (status written by the controller)", check: checkNotObservedStatus[WebhookEndpointStatus]},
	},
	"DocumentEvent": {
		"spec.event":                           {getter: "GetEvent", want: (&DocumentEvent{}).GetEvent()},
		"spec.documentStatus.extractionStatus": {getter: "GetExtractionStatus", want: (&DocumentEvent{}).GetExtractionStatus()},
		"status":                               {getter: "none (status written by the controller)", check: checkNotObservedStatus[DocumentEventStatus]},
	},
}

// checkNotObservedStatus accepts a status default that is the empty status except for an
// observedGeneration below 1: lower than any metadata.generation, so that kstatus readers see a new
// object as not yet reconciled. No getter applies it; a status built in Go starts at 0, which reads
// the same.
func checkNotObservedStatus[S any](raw []byte) error {
	var got S
	if err := strictUnmarshal(raw, &got); err != nil {
		return err
	}
	v := reflect.ValueOf(&got).Elem()
	gen := v.FieldByName("ObservedGeneration")
	if !gen.IsValid() {
		return fmt.Errorf("%T has no ObservedGeneration", got)
	}
	if gen.Int() >= 1 {
		return fmt.Errorf("observedGeneration default %d would read as an observed generation", gen.Int())
	}
	gen.SetInt(0)
	var zero S
	if !reflect.DeepEqual(got, zero) {
		return fmt.Errorf("default sets more than observedGeneration: %s", raw)
	}
	return nil
}

// strictUnmarshal decodes JSON and refuses fields that out does not have.
func strictUnmarshal(raw []byte, out any) error {
	return yaml.UnmarshalStrict(raw, out)
}

// compareDefault decodes the CRD default into the type of want and compares.
func compareDefault(raw []byte, want any) error {
	var got any
	switch want.(type) {
	case time.Duration:
		// metav1.Duration is how the API types carry durations: the same parser the API server's
		// clients use for the field.
		var d metav1.Duration
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("default %s is not a duration: %w", raw, err)
		}
		got = d.Duration
	default:
		ptr := reflect.New(reflect.TypeOf(want))
		if err := json.Unmarshal(raw, ptr.Interface()); err != nil {
			return fmt.Errorf("default %s does not decode into %T: %w", raw, want, err)
		}
		got = ptr.Elem().Interface()
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("CRD default %s is %v, the getter returns %v", raw, got, want)
	}
	return nil
}

// collectDefaults walks a schema and records the raw default of every property that has one.
func collectDefaults(path string, s *apiextensionsv1.JSONSchemaProps, out map[string][]byte) {
	if s == nil {
		return
	}
	if s.Default != nil {
		out[path] = s.Default.Raw
	}
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	for name, p := range s.Properties {
		collectDefaults(join(name), &p, out)
	}
	if s.Items != nil {
		collectDefaults(path+"[]", s.Items.Schema, out)
		for i := range s.Items.JSONSchemas {
			collectDefaults(fmt.Sprintf("%s[%d]", path, i), &s.Items.JSONSchemas[i], out)
		}
	}
	if s.AdditionalProperties != nil {
		collectDefaults(path+"{}", s.AdditionalProperties.Schema, out)
	}
	for _, group := range [][]apiextensionsv1.JSONSchemaProps{s.AllOf, s.AnyOf, s.OneOf} {
		for i := range group {
			collectDefaults(path, &group[i], out)
		}
	}
	collectDefaults(path, s.Not, out)
}

// loadCRDs reads every generated CRD and returns, by kind, the defaults of this package's version.
func loadCRDs(t *testing.T) map[string]map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(crdBases, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s", crdBases)
	}
	byKind := map[string]map[string][]byte{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if crd.Spec.Group != GroupVersion.Group {
			continue
		}
		var version *apiextensionsv1.CustomResourceDefinitionVersion
		for i := range crd.Spec.Versions {
			if crd.Spec.Versions[i].Name == GroupVersion.Version {
				version = &crd.Spec.Versions[i]
			}
		}
		if version == nil || version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
			t.Fatalf("%s: no %s schema", file, GroupVersion.Version)
		}
		defaults := map[string][]byte{}
		collectDefaults("", version.Schema.OpenAPIV3Schema, defaults)
		byKind[crd.Spec.Names.Kind] = defaults
	}
	return byKind
}

func TestCRDDefaultsMatchGetters(t *testing.T) {
	crds := loadCRDs(t)
	for _, kind := range []string{"WebhookEndpoint", "DocumentEvent"} {
		if _, ok := crds[kind]; !ok {
			t.Errorf("no CRD for %s in %s", kind, crdBases)
		}
	}
	for kind, defaults := range crds {
		checks := defaultChecks[kind]
		for _, path := range sortedKeys(defaults) {
			raw := defaults[path]
			c, ok := checks[path]
			if !ok {
				t.Errorf("%s %s has default %s but no entry in defaultChecks: add the getter that applies it in Go", kind, path, raw)
				continue
			}
			var err error
			if c.check != nil {
				err = c.check(raw)
			} else {
				err = compareDefault(raw, c.want)
			}
			if err != nil {
				t.Errorf("%s %s (%s): %v", kind, path, c.getter, err)
			}
		}
		for _, path := range sortedKeys(checks) {
			if _, ok := defaults[path]; !ok {
				t.Errorf("defaultChecks has %s %s, but the CRD has no default there", kind, path)
			}
		}
	}
	for kind := range defaultChecks {
		if _, ok := crds[kind]; !ok {
			t.Errorf("defaultChecks has kind %s, which no CRD in %s defines", kind, crdBases)
		}
	}
}

// TestCRDDefaultsMatchMarkers catches CRDs that are stale against the markers (a default added or
// changed without `make manifests`), so that TestCRDDefaultsMatchGetters sees the markers' values under
// a plain `go test`.
func TestCRDDefaultsMatchMarkers(t *testing.T) {
	markers := map[string]bool{}
	fset := token.NewFileSet()
	files, err := filepath.Glob("*_types.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Doc == nil {
				return true
			}
			for _, c := range field.Doc.List {
				text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
				value, ok := strings.CutPrefix(text, "+kubebuilder:default=")
				if !ok {
					continue
				}
				markers[jsonName(field)+"="+canonicalJSON(t, value, true)] = true
			}
			return true
		})
	}
	if len(markers) == 0 {
		t.Fatal("no +kubebuilder:default markers found")
	}

	inCRDs := map[string]bool{}
	for _, defaults := range loadCRDs(t) {
		for path, raw := range defaults {
			name := path[strings.LastIndexAny(path, ".]}")+1:]
			inCRDs[name+"="+canonicalJSON(t, string(raw), false)] = true
		}
	}
	for _, key := range sortedKeys(markers) {
		if !inCRDs[key] {
			t.Errorf("marker default %s is not in the CRDs in %s: run make manifests", key, crdBases)
		}
	}
	for _, key := range sortedKeys(inCRDs) {
		if !markers[key] {
			t.Errorf("CRD default %s has no +kubebuilder:default field marker in *_types.go: run make manifests", key)
		}
	}
}

// jsonName returns the JSON name of a struct field from its tag.
func jsonName(field *ast.Field) string {
	if field.Tag == nil {
		return ""
	}
	tag := reflect.StructTag(strings.Trim(field.Tag.Value, "`"))
	name, _, _ := strings.Cut(tag.Get("json"), ",")
	return name
}

// canonicalJSON re-encodes a default value. A marker value that is not JSON is a bare string, as
// controller-gen reads it (+kubebuilder:default=INDEXED).
func canonicalJSON(t *testing.T, value string, marker bool) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		if !marker {
			t.Fatalf("CRD default %q is not JSON: %v", value, err)
		}
		v = value
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
