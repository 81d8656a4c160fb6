// Command decimal-schema adds the validation of Decimal fields to a CRD that controller-gen wrote, which
// controller-gen cannot write itself:
//
//	go run ./hack/decimal-schema config/crd/bases/webhooks.1flow.io_documentevents.yaml spec.document.totalAmount
//
// A Decimal is a JSON number or a string holding one, so its schema has no type; the field's markers
// (+kubebuilder:validation:Schemaless, +kubebuilder:pruning:PreserveUnknownFields) make controller-gen
// write it so. Such a schema cannot be validated by the usual means: controller-gen writes pattern and
// maxLength only under type string, and the API server refuses x-kubernetes-validations (CEL) on a
// schema without a type ("unable to convert structural schema to CEL declarations"), except under
// x-kubernetes-int-or-string, which rejects 1234.56. So this command adds OpenAPI keywords that each
// constrain one JSON type, leaving numbers free: pattern and maxLength for strings, maxItems 0 and
// maxProperties 0 for arrays and objects, and a not-enum for booleans and the empty array and object.
//
// Each path names a property under the openAPIV3Schema of every version, with dots between the
// property names. The file is written back in controller-gen's own layout, so running the command again
// changes nothing.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// decimalPattern is the JSON number grammar of RFC 8259: what package payload writes as a JSON number.
const decimalPattern = `^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`

// maxDecimalLength bounds a decimal string; it is far more than any amount needs.
const maxDecimalLength = 64

// decimalValidation returns the keywords added to each Decimal schema.
func decimalValidation() map[string]any {
	return map[string]any{
		"pattern":       decimalPattern,
		"maxLength":     maxDecimalLength,
		"maxItems":      0,
		"maxProperties": 0,
		"not":           map[string]any{"enum": []any{true, false, map[string]any{}, []any{}}},
	}
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: decimal-schema CRD.yaml FIELD_PATH...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "decimal-schema:", err)
		os.Exit(1)
	}
}

func run(file string, paths []string) error {
	in, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, err := addDecimalValidation(in, paths)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return os.WriteFile(file, out, 0o644)
}

// documentStart begins every file that controller-gen writes.
const documentStart = "---\n"

// addDecimalValidation returns the CRD manifest crd with the Decimal validation added at each path.
func addDecimalValidation(crd []byte, paths []string) ([]byte, error) {
	body, ok := bytes.CutPrefix(crd, []byte(documentStart))
	if !ok {
		return nil, errors.New("not a single CRD as controller-gen writes it (no leading ---)")
	}
	asJSON, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, err
	}
	var object map[string]any
	dec := json.NewDecoder(bytes.NewReader(asJSON))
	// Keep numbers as their text, as controller-gen does when it writes the file.
	dec.UseNumber()
	if err := dec.Decode(&object); err != nil {
		return nil, err
	}
	versions, _ := lookup(object, "spec", "versions").([]any)
	if len(versions) == 0 {
		return nil, errors.New("no spec.versions")
	}
	for _, version := range versions {
		root, ok := lookup(version, "schema", "openAPIV3Schema").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("version %v has no schema.openAPIV3Schema", lookup(version, "name"))
		}
		for _, path := range paths {
			if err := addTo(root, path); err != nil {
				return nil, fmt.Errorf("version %v: %w", lookup(version, "name"), err)
			}
		}
	}
	out, err := yaml.Marshal(object)
	if err != nil {
		return nil, err
	}
	return append([]byte(documentStart), out...), nil
}

// addTo adds the Decimal validation to the property at path. The property must be what the Decimal
// markers make: no type, and x-kubernetes-preserve-unknown-fields.
func addTo(root map[string]any, path string) error {
	schema := root
	for name := range strings.SplitSeq(path, ".") {
		property, ok := lookup(schema, "properties", name).(map[string]any)
		if !ok {
			return fmt.Errorf("no property %s", path)
		}
		schema = property
	}
	if schema["type"] != nil || schema["x-kubernetes-preserve-unknown-fields"] != true {
		return fmt.Errorf("%s has a type or no x-kubernetes-preserve-unknown-fields; mark the field "+
			"+kubebuilder:validation:Schemaless and +kubebuilder:pruning:PreserveUnknownFields", path)
	}
	for keyword, value := range decimalValidation() {
		schema[keyword] = value
	}
	return nil
}

// lookup follows keys through nested objects and returns the value, or nil.
func lookup(value any, keys ...string) any {
	for _, key := range keys {
		object, ok := value.(map[string]any)
		if !ok {
			return nil
		}
		value = object[key]
	}
	return value
}
