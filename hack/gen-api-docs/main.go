// Command gen-api-docs writes the API reference (docs/api-reference.md) from the Go types of an API
// package, by default api/v1alpha1:
//
//	go run ./hack/gen-api-docs -o docs/api-reference.md
//
// It reads the package with go/parser and go/doc. Every exported struct type gets a section with a
// table Field | Type | Required | Default | Description: the field name comes from the json tag,
// Required from the +required and +optional markers (else from omitempty), Default from
// +kubebuilder:default, and the description is the field's doc comment without its marker lines,
// followed by the validation markers (Enum, Minimum, Maximum, MinLength, MaxLength, MaxItems, Pattern,
// XValidation messages). Types of the package are linked to their sections; named string types get a
// section with their values, and untyped string constants (condition reasons, Event reasons,
// annotations) are listed at the end. The output depends only on the source, so it can be checked in
// and compared in a test.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

func main() {
	dir := flag.String("dir", "api/v1alpha1", "the API package directory to document")
	out := flag.String("o", "", "the file to write; standard output when empty")
	flag.Parse()

	text, err := Generate(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-api-docs:", err)
		os.Exit(1)
	}
	if *out == "" {
		_, err = os.Stdout.Write(text)
	} else {
		err = os.WriteFile(*out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen-api-docs:", err)
		os.Exit(1)
	}
}

// Generate returns the Markdown API reference of the Go package in dir.
func Generate(dir string) ([]byte, error) {
	pkg, err := load(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	pkg.write(&b)
	return b.Bytes(), nil
}

// apiPackage is the parsed package and what the writer needs to know about it.
type apiPackage struct {
	fset    *token.FileSet
	doc     *doc.Package
	files   []*ast.File
	types   map[string]*doc.Type
	imports map[string]string // import name -> import path
	group   string            // from +groupName
	version string            // the package name, for example v1alpha1
}

func load(dir string) (*apiPackage, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		base := filepath.Base(name)
		if strings.HasSuffix(base, "_test.go") || strings.HasPrefix(base, "zz_generated") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Go files in %s", dir)
	}
	d, err := doc.NewFromFiles(fset, files, "api", doc.PreserveAST)
	if err != nil {
		return nil, err
	}
	p := &apiPackage{
		fset: fset, doc: d, files: files, version: d.Name,
		types:   map[string]*doc.Type{},
		imports: map[string]string{},
	}
	for _, t := range d.Types {
		p.types[t.Name] = t
	}
	for _, f := range files {
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := filepath.Base(path)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			p.imports[name] = path
		}
		// +groupName sits in the package comment.
		if f.Doc != nil {
			for _, m := range markers(f.Doc.Text()) {
				if v, ok := strings.CutPrefix(m, "groupName="); ok {
					p.group = v
				}
			}
		}
	}
	if p.group == "" {
		return nil, errors.New("no +groupName marker in the package comment")
	}
	return p, nil
}

// --- comments and markers ---

// markers returns the marker lines of a comment (those starting with +), without the +.
func markers(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "+"); ok {
			out = append(out, m)
		}
	}
	return out
}

// prose returns a comment without its marker lines, as paragraphs of single lines.
func prose(text string) []string {
	var paragraphs []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			paragraphs = append(paragraphs, strings.Join(cur, " "))
			cur = nil
		}
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "+"):
			continue
		case line == "":
			flush()
		default:
			cur = append(cur, line)
		}
	}
	flush()
	return paragraphs
}

// typeMarkers returns the markers of a type: those of its doc comment and of the comment groups right
// above it that a blank line separates from the doc (where kubebuilder puts +kubebuilder:object:root).
func (p *apiPackage) typeMarkers(t *doc.Type) []string {
	out := markers(t.Doc)
	start := t.Decl.Pos()
	if t.Decl.Doc != nil {
		start = t.Decl.Doc.Pos()
	}
	for _, f := range p.files {
		if p.fset.File(f.Pos()) != p.fset.File(start) {
			continue
		}
		line := p.fset.Position(start).Line
		for i := len(f.Comments) - 1; i >= 0; i-- {
			c := f.Comments[i]
			if c.Pos() >= start {
				continue
			}
			end := p.fset.Position(c.End()).Line
			if end < line-2 {
				break
			}
			if end == line-2 {
				out = append(markers(c.Text()), out...)
				line = p.fset.Position(c.Pos()).Line
			}
		}
	}
	return out
}

// markerValue returns the value of the first marker named name ("name=value"), unquoted.
func markerValue(ms []string, name string) (string, bool) {
	for _, m := range ms {
		if v, ok := strings.CutPrefix(m, name+"="); ok {
			return unquote(v), true
		}
	}
	return "", false
}

func hasMarker(ms []string, name string) bool {
	for _, m := range ms {
		if m == name {
			return true
		}
	}
	return false
}

// unquote removes Go string quotes or backquotes around a marker value.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '`') && v[len(v)-1] == v[0] {
		if s, err := strconv.Unquote(v); err == nil {
			return s
		}
	}
	return v
}

// xValidationMessages returns the message= parts of +kubebuilder:validation:XValidation markers.
func xValidationMessages(ms []string) []string {
	var out []string
	for _, m := range ms {
		rest, ok := strings.CutPrefix(m, "kubebuilder:validation:XValidation:")
		if !ok {
			continue
		}
		if i := strings.LastIndex(rest, "message="); i >= 0 {
			out = append(out, unquote(strings.TrimSpace(rest[i+len("message="):])))
		}
	}
	return out
}

// validation describes the validation markers in words. prefix is "kubebuilder:validation:" or, for
// the items of a list, "kubebuilder:validation:items:".
func validation(ms []string, prefix string) []string {
	var out []string
	if v, ok := markerValue(ms, prefix+"Enum"); ok {
		enum := strings.Split(v, ";")
		values := make([]string, 0, len(enum))
		for _, e := range enum {
			values = append(values, code(unquote(e)))
		}
		out = append(out, "one of "+strings.Join(values, ", "))
	}
	minV, hasMin := markerValue(ms, prefix+"Minimum")
	maxV, hasMax := markerValue(ms, prefix+"Maximum")
	switch {
	case hasMin && hasMax:
		out = append(out, fmt.Sprintf("%s to %s", minV, maxV))
	case hasMin:
		out = append(out, "at least "+minV)
	case hasMax:
		out = append(out, "at most "+maxV)
	}
	minL, hasMinL := markerValue(ms, prefix+"MinLength")
	maxL, hasMaxL := markerValue(ms, prefix+"MaxLength")
	switch {
	case hasMinL && hasMaxL:
		out = append(out, fmt.Sprintf("%s to %s characters", minL, maxL))
	case hasMinL:
		out = append(out, "at least "+minL+" characters")
	case hasMaxL:
		out = append(out, "at most "+maxL+" characters")
	}
	if v, ok := markerValue(ms, prefix+"MaxItems"); ok {
		out = append(out, "at most "+v+" items")
	}
	if v, ok := markerValue(ms, prefix+"Pattern"); ok {
		out = append(out, "pattern "+code(v))
	}
	return out
}

// --- types ---

// typeRef is how a field's Go type reads in the reference.
type typeRef struct {
	text  string // Markdown
	local string // the package type it names, if any, after pointers and slices
	list  bool
}

func (p *apiPackage) describeType(expr ast.Expr) typeRef {
	switch e := expr.(type) {
	case *ast.StarExpr:
		return p.describeType(e.X)
	case *ast.ArrayType:
		inner := p.describeType(e.Elt)
		inner.text = "array of " + inner.text
		inner.list = true
		return inner
	case *ast.MapType:
		return typeRef{text: "map of " + p.describeType(e.Key).text + " to " + p.describeType(e.Value).text}
	case *ast.Ident:
		if t, ok := p.types[e.Name]; ok {
			if isStruct(t) {
				return typeRef{text: link(e.Name), local: e.Name}
			}
			return typeRef{text: link(e.Name) + " (" + basicName(underlying(t)) + ")", local: e.Name}
		}
		return typeRef{text: basicName(e.Name)}
	case *ast.SelectorExpr:
		pkgName := fmt.Sprint(e.X)
		switch pkgName + "." + e.Sel.Name {
		case "metav1.Duration":
			return typeRef{text: "string (duration, for example `30s`)"}
		case "metav1.Time":
			return typeRef{text: "string (RFC 3339 date-time)"}
		case "metav1.MicroTime":
			return typeRef{text: "string (RFC 3339 date-time, microseconds)"}
		case "apiextensionsv1.JSON":
			return typeRef{text: "JSON"}
		}
		if path, ok := p.imports[pkgName]; ok {
			return typeRef{text: fmt.Sprintf("[%s](https://pkg.go.dev/%s#%s)", e.Sel.Name, path, e.Sel.Name)}
		}
		return typeRef{text: pkgName + "." + e.Sel.Name}
	}
	return typeRef{text: fmt.Sprintf("%T", expr)}
}

func isStruct(t *doc.Type) bool {
	_, ok := typeSpec(t).Type.(*ast.StructType)
	return ok
}

func typeSpec(t *doc.Type) *ast.TypeSpec {
	for _, s := range t.Decl.Specs {
		if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.Name == t.Name {
			return ts
		}
	}
	panic("no spec for type " + t.Name)
}

func underlying(t *doc.Type) string {
	if id, ok := typeSpec(t).Type.(*ast.Ident); ok {
		return id.Name
	}
	return "object"
}

func basicName(goName string) string {
	switch goName {
	case "int", "int32":
		return "integer (int32)"
	case "int64":
		return "integer (int64)"
	case "bool":
		return "boolean"
	case "float32", "float64":
		return "number"
	}
	return goName
}

// typeString is the Type column of a string field.
const typeString = "string"

// --- output ---

// kinds are the struct types with embedded TypeMeta and ObjectMeta: the API's resources.
func (p *apiPackage) isKind(t *doc.Type) bool {
	if !isStruct(t) {
		return false
	}
	var typeMeta, objectMeta bool
	for _, f := range typeSpec(t).Type.(*ast.StructType).Fields.List {
		if se, ok := f.Type.(*ast.SelectorExpr); ok && len(f.Names) == 0 {
			typeMeta = typeMeta || se.Sel.Name == "TypeMeta"
			objectMeta = objectMeta || se.Sel.Name == "ObjectMeta"
		}
	}
	return typeMeta && objectMeta
}

// order lists the documented types: each kind followed by the types it uses, depth first in field
// order, then the remaining struct types and named types by name.
func (p *apiPackage) order() (structs, named []*doc.Type) {
	seen := map[string]bool{}
	var visit func(t *doc.Type)
	visit = func(t *doc.Type) {
		if seen[t.Name] || !ast.IsExported(t.Name) {
			return
		}
		seen[t.Name] = true
		if !isStruct(t) {
			named = append(named, t)
			return
		}
		structs = append(structs, t)
		for _, f := range typeSpec(t).Type.(*ast.StructType).Fields.List {
			if ref := p.describeType(f.Type); ref.local != "" {
				visit(p.types[ref.local])
			}
		}
	}
	for _, t := range p.doc.Types { // go/doc sorts them by name
		if p.isKind(t) {
			visit(t)
		}
	}
	var restNamed []*doc.Type
	for _, t := range p.doc.Types {
		if seen[t.Name] || !ast.IsExported(t.Name) {
			continue
		}
		if isStruct(t) {
			visit(t)
		} else if underlying(t) == typeString {
			seen[t.Name] = true
			restNamed = append(restNamed, t)
		}
	}
	sort.Slice(named, func(i, j int) bool { return named[i].Name < named[j].Name })
	return structs, append(named, restNamed...)
}

func (p *apiPackage) write(b *bytes.Buffer) {
	structs, named := p.order()
	fmt.Fprintf(b, "# API reference: %s/%s\n\n", p.group, p.version)
	b.WriteString("<!-- Code generated by hack/gen-api-docs from api/" + p.version + "; DO NOT EDIT. Run `make docs`. -->\n\n")
	for _, para := range prose(p.doc.Doc) {
		b.WriteString(para + "\n\n")
	}
	b.WriteString("Required fields must be set; optional fields may be omitted, and the API server fills in the default, " +
		"if any. Validation is enforced by the API server (OpenAPI schema and CEL rules of the CRDs).\n\n")

	b.WriteString("## Contents\n\n")
	for _, t := range structs {
		suffix := ""
		if p.isKind(t) {
			suffix = " (kind)"
		}
		fmt.Fprintf(b, "- %s%s\n", link(t.Name), suffix)
	}
	for _, t := range named {
		fmt.Fprintf(b, "- %s\n", link(t.Name))
	}
	if len(p.constGroups()) > 0 {
		b.WriteString("- [Constants](#constants)\n")
	}
	b.WriteString("\n")

	for _, t := range structs {
		p.writeStruct(b, t)
	}
	for _, t := range named {
		p.writeNamed(b, t)
	}
	p.writeConstants(b)
}

func (p *apiPackage) writeStruct(b *bytes.Buffer, t *doc.Type) {
	fmt.Fprintf(b, "## %s\n\n", t.Name)
	for _, para := range prose(t.Doc) {
		b.WriteString(para + "\n\n")
	}
	if rules := xValidationMessages(p.typeMarkers(t)); len(rules) > 0 {
		fmt.Fprintf(b, "Validation: %s.\n\n", strings.Join(rules, "; "))
	}
	if p.isKind(t) {
		p.writeKindFacts(b, t)
	}
	b.WriteString("| Field | Type | Required | Default | Description |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, f := range typeSpec(t).Type.(*ast.StructType).Fields.List {
		for _, row := range p.fieldRows(t.Name, f) {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3], row[4])
		}
	}
	b.WriteString("\n")
}

// writeKindFacts lists what the resource markers say: scope, short names, subresources, columns.
func (p *apiPackage) writeKindFacts(b *bytes.Buffer, t *doc.Type) {
	ms := p.typeMarkers(t)
	fmt.Fprintf(b, "- API version: `%s/%s`, kind `%s`, namespaced\n", p.group, p.version, t.Name)
	for _, m := range ms {
		rest, ok := strings.CutPrefix(m, "kubebuilder:resource:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "shortName="); ok {
				fmt.Fprintf(b, "- Short name: `%s` (`kubectl get %s`)\n", v, v)
			}
			if v, ok := strings.CutPrefix(kv, "categories="); ok {
				fmt.Fprintf(b, "- Category: `%s` (`kubectl get %s` lists both kinds)\n", v, v)
			}
		}
	}
	if hasMarker(ms, "kubebuilder:subresource:status") {
		b.WriteString("- Subresource: `status`\n")
	}
	var columns, selectable []string
	for _, m := range ms {
		if rest, ok := strings.CutPrefix(m, "kubebuilder:printcolumn:"); ok {
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "name="); ok {
					columns = append(columns, unquote(v))
				}
			}
		}
		if v, ok := strings.CutPrefix(m, "kubebuilder:selectablefield:JSONPath="); ok {
			selectable = append(selectable, code(strings.TrimPrefix(unquote(v), ".")))
		}
	}
	if len(columns) > 0 {
		fmt.Fprintf(b, "- `kubectl get` columns: %s\n", strings.Join(columns, ", "))
	}
	if len(selectable) > 0 {
		fmt.Fprintf(b, "- Field selectors (`kubectl get --field-selector`): %s\n", strings.Join(selectable, ", "))
	}
	b.WriteString("\n")
}

// Values of the Required column.
const (
	yes = "yes"
	no  = "no"
)

// jsonField is what a struct field's json tag says.
type jsonField struct {
	name              string
	omitempty, inline bool
}

func parseJSONTag(f *ast.Field) jsonField {
	var tag reflect.StructTag
	if f.Tag != nil {
		s, _ := strconv.Unquote(f.Tag.Value)
		tag = reflect.StructTag(s)
	}
	parts := strings.Split(tag.Get("json"), ",")
	jf := jsonField{name: parts[0]}
	for _, o := range parts[1:] {
		jf.omitempty = jf.omitempty || o == "omitempty"
		jf.inline = jf.inline || o == "inline"
	}
	if jf.name == "" && len(f.Names) > 0 {
		jf.name = f.Names[0].Name
	}
	return jf
}

func isMeta(f *ast.Field, name string) bool {
	se, ok := f.Type.(*ast.SelectorExpr)
	return ok && se.Sel.Name == name
}

// fieldRows returns the table rows of one struct field: none for an unexported or json:"-" field, two
// (apiVersion and kind) for an inline TypeMeta.
func (p *apiPackage) fieldRows(owner string, f *ast.Field) [][5]string {
	jf := parseJSONTag(f)
	if len(f.Names) == 0 && jf.inline && isMeta(f, "TypeMeta") {
		return [][5]string{
			{code("apiVersion"), typeString, yes, "", cell(code(p.group + "/" + p.version))},
			{code("kind"), typeString, yes, "", code(owner)},
		}
	}
	if jf.name == "-" || (len(f.Names) > 0 && !ast.IsExported(f.Names[0].Name)) {
		return nil
	}
	var text string
	if f.Doc != nil {
		text = f.Doc.Text()
	}
	ms := markers(text)

	required := yes
	switch {
	case isMeta(f, "ObjectMeta"):
		// Every object needs a name, even though the Go field is omitempty.
	case hasMarker(ms, "required") || hasMarker(ms, "kubebuilder:validation:Required"):
	case hasMarker(ms, "optional") || hasMarker(ms, "kubebuilder:validation:Optional") || jf.omitempty:
		required = no
	}
	def := ""
	if v, ok := markerValue(ms, "kubebuilder:default"); ok {
		def = code(v)
	}

	desc := strings.Join(prose(text), " ")
	switch {
	case desc != "":
	case isMeta(f, "ObjectMeta"):
		desc = "Standard object metadata: name, namespace, labels, annotations."
	case isMeta(f, "ListMeta"):
		desc = "Standard list metadata."
	}
	ref := p.describeType(f.Type)
	if rules := p.fieldValidation(ms, ref); len(rules) > 0 {
		desc = strings.TrimSpace(desc + " <br>Validation: " + strings.Join(rules, "; ") + ".")
	}
	return [][5]string{{code(jf.name), ref.text, required, cell(def), cell(desc)}}
}

// fieldValidation describes a field's validation: its own markers, those of its named type, and its
// CEL rule messages.
func (p *apiPackage) fieldValidation(ms []string, ref typeRef) []string {
	rules := validation(ms, "kubebuilder:validation:")
	each := func(rs []string) {
		for _, r := range rs {
			if ref.list {
				r = "each item " + r
			}
			rules = append(rules, r)
		}
	}
	if ref.list {
		each(validation(ms, "kubebuilder:validation:items:"))
	}
	if ref.local != "" && !isStruct(p.types[ref.local]) {
		// The named type's own markers (an Enum, a Pattern) apply to the field.
		each(validation(p.typeMarkers(p.types[ref.local]), "kubebuilder:validation:"))
	}
	if hasMarker(ms, "nullable") {
		rules = append(rules, "may be null")
	}
	return append(rules, xValidationMessages(ms)...)
}

func (p *apiPackage) writeNamed(b *bytes.Buffer, t *doc.Type) {
	fmt.Fprintf(b, "## %s\n\n", t.Name)
	for _, para := range prose(t.Doc) {
		b.WriteString(para + "\n\n")
	}
	fmt.Fprintf(b, "Underlying type: %s.", basicName(underlying(t)))
	if rules := validation(p.typeMarkers(t), "kubebuilder:validation:"); len(rules) > 0 {
		fmt.Fprintf(b, " Validation: %s.", strings.Join(rules, "; "))
	}
	b.WriteString("\n\n")
	rows := p.constRows(t.Consts)
	if len(rows) > 0 {
		b.WriteString("| Value | Description |\n|---|---|\n")
		for _, r := range rows {
			fmt.Fprintf(b, "| %s | %s |\n", code(r.value), cell(r.desc))
		}
		b.WriteString("\n")
	}
}

type constRow struct{ name, value, desc string }

// constRows returns the constants of value groups whose values are string literals.
func (p *apiPackage) constRows(values []*doc.Value) []constRow {
	var rows []constRow
	for _, v := range values {
		for _, spec := range v.Decl.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			if !ok {
				continue
			}
			for i, n := range vs.Names {
				if !ast.IsExported(n.Name) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				desc := ""
				switch {
				case vs.Doc != nil:
					desc = strings.Join(prose(vs.Doc.Text()), " ")
				case vs.Comment != nil:
					desc = strings.Join(prose(vs.Comment.Text()), " ")
				case len(v.Decl.Specs) == 1:
					// const X T = "x" with the comment above the keyword.
					desc = strings.Join(prose(v.Doc), " ")
				}
				rows = append(rows, constRow{name: n.Name, value: s, desc: desc})
			}
		}
	}
	return rows
}

// constGroups are the package-level (untyped) constant groups with string values, in source order.
func (p *apiPackage) constGroups() []*doc.Value {
	var out []*doc.Value
	for _, v := range p.doc.Consts {
		if len(p.constRows([]*doc.Value{v})) > 0 {
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := p.fset.Position(out[i].Decl.Pos()), p.fset.Position(out[j].Decl.Pos())
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Offset < b.Offset
	})
	return out
}

func (p *apiPackage) writeConstants(b *bytes.Buffer) {
	groups := p.constGroups()
	if len(groups) == 0 {
		return
	}
	b.WriteString("## Constants\n\n")
	b.WriteString("Condition types and reasons, Event reasons, Secret keys and annotations, as exported by the Go package.\n\n")
	for _, g := range groups {
		text := strings.Join(prose(g.Doc), " ")
		if text == "" {
			text = "Other constants."
		}
		// The first sentence is the heading, the rest a paragraph under it.
		title, rest, _ := strings.Cut(text, ". ")
		fmt.Fprintf(b, "### %s\n\n", strings.TrimSuffix(title, "."))
		if rest != "" {
			b.WriteString(rest + "\n\n")
		}
		b.WriteString("| Name | Value | Description |\n|---|---|---|\n")
		for _, r := range p.constRows([]*doc.Value{g}) {
			fmt.Fprintf(b, "| %s | %s | %s |\n", code(r.name), code(r.value), cell(r.desc))
		}
		b.WriteString("\n")
	}
}

// link is a Markdown link to the section of a package type (GitHub's heading anchors are lowercase).
func link(name string) string {
	return fmt.Sprintf("[%s](#%s)", name, strings.ToLower(name))
}

// code wraps s in a code span, with a fence long enough for any backquotes inside.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// cell escapes what would end a Markdown table cell; GitHub also honours \| inside code spans.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
