package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
)

// The pages: templates in templates/, each rendered inside layout.html.
const (
	endpointsTemplate = "endpoints"
	endpointTemplate  = "endpoint"
	eventsTemplate    = "events"
	eventTemplate     = "event"
	confirmTemplate   = "confirm"
	messageTemplate   = "message"
)

var pageNames = []string{endpointsTemplate, endpointTemplate, eventsTemplate, eventTemplate, confirmTemplate, messageTemplate}

// The sections of the navigation.
const (
	endpointsSection = "endpoints"
	eventsSection    = "events"
)

type pageTemplates struct{ byName map[string]*template.Template }

func parseTemplates() (*pageTemplates, error) {
	p := &pageTemplates{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// layout is what every page shows around its content.
type layout struct {
	Title string
	// Nav marks the current section in the navigation: endpointsSection or eventsSection.
	Nav string
	// Scope says what the console shows: "namespace acme" or "all namespaces".
	Scope string
	// CSRF goes into every form that posts.
	CSRF string
	// RefreshSeconds, when not 0, makes the script re-read the page's live part that often.
	RefreshSeconds int
	// Problems are errors of the API server, in words (describeAPIError).
	Problems []string
	// Notices report what an action just did.
	Notices []string
	// Content is the page's own data.
	Content any
}

// render writes the page, or a plain error when the template fails (a bug: every template is covered
// by tests). The page is rendered into a buffer first, so that a failure leaves no half page behind.
func (s *Server) render(w http.ResponseWriter, status int, name string, l layout) {
	l.CSRF = s.csrf
	l.Scope = "all namespaces"
	if s.opts.Namespace != "" {
		l.Scope = "namespace " + s.opts.Namespace
	}
	var buf bytes.Buffer
	if err := s.pages.byName[name].ExecuteTemplate(&buf, "layout", l); err != nil {
		http.Error(w, "console: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// renderMessage shows a page with only problems or notices, for an action that could not be done.
func (s *Server) renderMessage(w http.ResponseWriter, p apiProblem, title, back string) {
	s.render(w, p.status, messageTemplate, layout{Title: title, Problems: []string{p.message}, Content: back})
}
