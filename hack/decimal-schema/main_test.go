package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed CRD already has the validation, so adding it again changes no byte: the layout is
// controller-gen's, and `make manifests` leaves the file as committed.
func TestCommittedCRDIsUpToDate(t *testing.T) {
	path := filepath.Join("..", "..", "config", "crd", "bases", "webhooks.1flow.io_documentevents.yaml")
	crd, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := addDecimalValidation(crd, []string{"spec.document.totalAmount"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(crd) {
		t.Fatalf("%s lacks the Decimal validation or is not in controller-gen's layout: run `make manifests`", path)
	}
}

const crdWithAmount = `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          spec:
            properties:
              amount:
                description: Amount is a Decimal.
                nullable: true
                x-kubernetes-preserve-unknown-fields: true
            type: object
        type: object
`

func TestAddsValidation(t *testing.T) {
	got, err := addDecimalValidation([]byte(crdWithAmount), []string{"spec.amount"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(crdWithAmount, `
                nullable: true
`, `
                maxItems: 0
                maxLength: 64
                maxProperties: 0
                not:
                  enum:
                  - true
                  - false
                  - {}
                  - []
                nullable: true
                pattern: ^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$
`, 1)
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRefuses(t *testing.T) {
	cases := []struct{ name, crd, path, want string }{
		{"a missing property", crdWithAmount, "spec.total", "no property spec.total"},
		{"a typed property", strings.Replace(crdWithAmount, "nullable: true", "type: string", 1), "spec.amount",
			"spec.amount has a type or no x-kubernetes-preserve-unknown-fields"},
		{"a property that prunes", strings.Replace(crdWithAmount, "x-kubernetes-preserve-unknown-fields: true", "x-kubernetes-preserve-unknown-fields: false", 1),
			"spec.amount", "spec.amount has a type or no x-kubernetes-preserve-unknown-fields"},
		{"a file without ---", strings.TrimPrefix(crdWithAmount, "---\n"), "spec.amount", "no leading ---"},
		{"a file without versions", "---\nkind: CustomResourceDefinition\n", "spec.amount", "no spec.versions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := addDecimalValidation([]byte(tc.crd), []string{tc.path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
