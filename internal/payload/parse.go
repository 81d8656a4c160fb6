package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// parsedBody is body as Parse reads it: the top-level members that must be present are pointers, so
// that a missing success or status is told apart from a zero value, and the raw members are kept as
// they are, so that a member of the wrong JSON type gets an error that names it.
type parsedBody struct {
	Event      string            `json:"event"`
	Success    *bool             `json:"success"`
	DocumentID string            `json:"documentId"`
	Status     *parsedStatus     `json:"status"`
	Document   *document         `json:"document"`
	Extraction *parsedExtraction `json:"extraction"`
}

type parsedStatus struct {
	ExtractionStatus string          `json:"extractionStatus"`
	DocType          *string         `json:"docType"`
	CreatedAt        string          `json:"createdAt"`
	UpdatedAt        string          `json:"updatedAt"`
	ExtractionErrors json.RawMessage `json:"extractionErrors"`
}

type parsedExtraction struct {
	Fields json.RawMessage `json:"fields"`
	Tables json.RawMessage `json:"tables"`
}

// Parse decodes one payload and returns the DocumentEvent spec that the operator would send as the same
// payload. totalAmount keeps every digit (it becomes the Decimal string); extractionErrors, fields and
// tables are kept as raw JSON; a null description, totalAmount or documentDate is left unset, which is
// sent as null. It fails on invalid JSON, unknown members (names are matched exactly, not
// case-insensitively as encoding/json does), trailing data, a missing documentId, success false, an
// empty documentDate (the operator sends null, never ""), and members of the wrong JSON type.
func Parse(r io.Reader) (*webhooksv1alpha1.DocumentEventSpec, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var p parsedBody
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("invalid payload JSON: the input is empty")
		}
		return nil, fmt.Errorf("invalid payload JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid payload JSON: unexpected data after the payload object")
	}

	if err := checkMembers(data); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.DocumentID) == "" {
		return nil, errors.New("invalid payload: documentId is missing or empty")
	}
	if p.Success != nil && !*p.Success {
		return nil, errors.New(`invalid payload: "success" is false, but the operator only sends document.ready payloads with success true`)
	}
	if p.Event != "" && p.Event != string(webhooksv1alpha1.DocumentReadyEvent) {
		return nil, fmt.Errorf("invalid payload: unsupported event %q (supported: %s)", p.Event, webhooksv1alpha1.DocumentReadyEvent)
	}

	spec := &webhooksv1alpha1.DocumentEventSpec{
		Event:      webhooksv1alpha1.EventType(p.Event),
		DocumentID: p.DocumentID,
	}
	if st := p.Status; st != nil {
		spec.DocumentStatus = webhooksv1alpha1.DocumentStatus{
			ExtractionStatus: st.ExtractionStatus,
			DocType:          st.DocType,
			CreatedAt:        st.CreatedAt,
			UpdatedAt:        st.UpdatedAt,
		}
		errs, err := jsonArray("status.extractionErrors", st.ExtractionErrors)
		if err != nil {
			return nil, err
		}
		spec.DocumentStatus.ExtractionErrors = errs
	}
	if d := p.Document; d != nil {
		spec.Document = &webhooksv1alpha1.DocumentSummary{Description: d.Description}
		if d.TotalAmount != nil {
			// The decoder only stores a valid JSON number, literal or quoted, in a json.Number.
			amount := webhooksv1alpha1.Decimal(*d.TotalAmount)
			spec.Document.TotalAmount = &amount
		}
		if d.DocumentDate != nil {
			if *d.DocumentDate == "" {
				return nil, errors.New(`invalid payload: document.documentDate is ""; an unknown date is null`)
			}
			spec.Document.DocumentDate = *d.DocumentDate
		}
	}
	if e := p.Extraction; e != nil {
		fields, err := jsonObject("extraction.fields", e.Fields)
		if err != nil {
			return nil, err
		}
		tables, err := jsonObject("extraction.tables", e.Tables)
		if err != nil {
			return nil, err
		}
		spec.Extraction = &webhooksv1alpha1.Extraction{Fields: fields, Tables: tables}
	}
	return spec, nil
}

// Names of the payload's nested objects.
const (
	statusMember     = "status"
	documentMember   = "document"
	extractionMember = "extraction"
)

// members lists the member names of the payload's objects, by their path.
var members = map[string][]string{
	"":               {"event", "success", "documentId", statusMember, documentMember, extractionMember},
	statusMember:     {"extractionStatus", "docType", "createdAt", "updatedAt", "extractionErrors"},
	documentMember:   {"description", "totalAmount", "documentDate"},
	extractionMember: {"fields", "tables"},
}

// checkMembers rejects member names that the payload does not have, compared exactly. It runs after a
// successful decode, so the objects are known to be valid JSON of the right type.
func checkMembers(data []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("invalid payload JSON: %w", err)
	}
	objects := map[string]map[string]json.RawMessage{"": top}
	for _, name := range []string{statusMember, documentMember, extractionMember} {
		if raw, ok := top[name]; ok && !isNull(raw) {
			var object map[string]json.RawMessage
			if err := json.Unmarshal(raw, &object); err != nil {
				return fmt.Errorf("invalid payload: %s must be a JSON object or null", name)
			}
			objects[name] = object
		}
	}
	for path, object := range objects {
		for member := range object {
			if !slices.Contains(members[path], member) {
				if path != "" {
					member = path + "." + member
				}
				return fmt.Errorf("invalid payload: unknown member %q (member names are case-sensitive)", member)
			}
		}
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	trimmed := bytes.TrimSpace(raw)
	return len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null"))
}

// jsonArray splits a JSON array into its raw items; null or absent gives nil. A null item gets no Raw,
// as decoding the spec from the API server gives it, and Encode writes it back as null in its place.
func jsonArray(name string, raw json.RawMessage) ([]apiextensionsv1.JSON, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("invalid payload: %s must be a JSON array or null", name)
	}
	out := make([]apiextensionsv1.JSON, len(items))
	for i, item := range items {
		if !isNull(item) {
			out[i].Raw = compact(item)
		}
	}
	return out, nil
}

// jsonObject keeps a JSON object as raw JSON; null or absent gives nil.
func jsonObject(name string, raw json.RawMessage) (*apiextensionsv1.JSON, error) {
	if isNull(raw) {
		return nil, nil
	}
	if trimmed := bytes.TrimSpace(raw); trimmed[0] != '{' {
		return nil, fmt.Errorf("invalid payload: %s must be a JSON object or null", name)
	}
	return &apiextensionsv1.JSON{Raw: compact(raw)}, nil
}

// compact removes insignificant white space; the text of numbers and strings is kept as it is.
func compact(raw json.RawMessage) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw // the decoder already validated it
	}
	return buf.Bytes()
}

// maxNameBaseLength leaves room for "-" and the random suffix within a 63-character DNS-1123 label.
const maxNameBaseLength = 63 - 1 - nameSuffixLength

const nameSuffixLength = 5

var invalidNameRun = regexp.MustCompile(`[^a-z0-9]+`)

// nameBase returns documentID as a DNS-1123 label fragment: lowercase, every run of other characters
// replaced by one '-', trimmed to alphanumerics at both ends, at most 57 characters. It returns "doc"
// when nothing usable is left.
func nameBase(documentID string) string {
	base := invalidNameRun.ReplaceAllString(strings.ToLower(documentID), "-")
	base = strings.Trim(base, "-")
	if len(base) > maxNameBaseLength {
		base = strings.TrimRight(base[:maxNameBaseLength], "-")
	}
	if base == "" {
		return "doc"
	}
	return base
}

// Name returns a DocumentEvent name for documentID: the documentID as a DNS-1123 label (lowercase,
// other characters replaced by '-', at most 57 characters, "doc" when nothing is left) plus '-' and a
// short random suffix, so that sending the same document twice creates two events.
func Name(documentID string) string {
	return nameBase(documentID) + "-" + utilrand.String(nameSuffixLength)
}
