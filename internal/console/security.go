package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// ContentSecurityPolicy lets a page load only the console's own script and style sheet, run no inline
// script, be framed by no one and post forms only to the console. html/template escapes every object
// field; the policy is the second line of defence should a value ever reach the page unescaped.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// TokenParam is the query parameter of the printed URL that carries the access token.
const TokenParam = "token"

// CSRFField is the form field (and CSRFHeader the header) that carries the CSRF token of a POST.
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-Console-CSRF"
)

// randomToken returns 32 random bytes, URL-safe: unguessable, as the token of a Jupyter server is.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func equalSecrets(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// secure wraps every handler with the console's access rules, in this order:
//
//  1. The Host header must name the address the console listens on. A page of another site whose name
//     was rebound to 127.0.0.1 (DNS rebinding) sends its own name as Host, and is refused before
//     anything else.
//  2. The request must carry the access token: the printed URL's ?token= once, which is exchanged for an
//     HttpOnly, SameSite=Strict cookie and then removed from the address bar by a redirect (so that it
//     does not stay in the history or leak in a Referer), or that cookie afterwards.
//  3. A POST, the only method that changes anything, must also carry the CSRF token that the console
//     puts into its own forms, and come from the console's own origin (Origin, or Sec-Fetch-Site).
//
// Every answer carries the Content-Security-Policy and headers that keep it out of frames and caches.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		// same-origin rather than no-referrer: under no-referrer, browsers send "Origin: null" with the
		// console's own forms, which the origin check must refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")

		if !s.allowedHost(r.Host) {
			http.Error(w, "Refused: this console answers only requests addressed to "+s.host+
				" (the Host header names "+r.Host+").", http.StatusMisdirectedRequest)
			return
		}
		if token := r.URL.Query().Get(TokenParam); token != "" {
			if r.Method != http.MethodGet || !equalSecrets(token, s.token) {
				s.refuseToken(w)
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name: s.cookieName, Value: s.token, Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode,
			})
			query := r.URL.Query()
			query.Del(TokenParam)
			// Only to the console's own paths: "//host/..." (or "/\\host/...") would name another host to
			// the browser.
			target := url.URL{Path: "/" + strings.TrimLeft(r.URL.Path, "/\\"), RawQuery: query.Encode()}
			http.Redirect(w, r, target.String(), http.StatusSeeOther)
			return
		}
		cookie, err := r.Cookie(s.cookieName)
		if err != nil || !equalSecrets(cookie.Value, s.token) {
			s.refuseToken(w)
			return
		}
		if r.Method == http.MethodPost {
			if status, reason := readForm(w, r); status != 0 {
				http.Error(w, "Refused: "+reason, status)
				return
			}
			if reason := s.refuseCSRF(r); reason != "" {
				http.Error(w, "Refused: "+reason+". Reload the page and try again.", http.StatusForbidden)
				return
			}
		} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) refuseToken(w http.ResponseWriter) {
	http.Error(w, "Unauthorized: open the URL that `kubectl webhook ui` printed; it carries the access token "+
		"(a new one each time the console starts).", http.StatusUnauthorized)
}

// allowedHost reports whether host (host:port of the request) names the console's address. A console
// bound to all interfaces (0.0.0.0, ::) cannot know the names it is reached by, and relies on the
// token alone.
func (s *Server) allowedHost(host string) bool {
	if s.anyHost {
		return true
	}
	for _, allowed := range s.hosts {
		if strings.EqualFold(host, allowed) {
			return true
		}
	}
	return false
}

// maxFormBytes bounds a POST's body: the console's forms post a few short fields.
const maxFormBytes = 64 << 10

// readForm reads a POST's urlencoded form before anything looks at it, whatever carries the CSRF token,
// so that a handler never acts on an empty form that was only left unread (Redeliver failed with no
// filter would take every Failed event). It refuses, with the status to answer, a body over maxFormBytes
// and any other kind of body, multipart above all, before reading it.
func readForm(w http.ResponseWriter, r *http.Request) (status int, reason string) {
	if r.ContentLength != 0 {
		if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType != "application/x-www-form-urlencoded" {
			return http.StatusUnsupportedMediaType, "the console accepts only urlencoded forms"
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return http.StatusRequestEntityTooLarge, fmt.Sprintf("the form is over %d bytes", maxFormBytes)
		}
		return http.StatusBadRequest, "the form cannot be read: " + err.Error()
	}
	return 0, ""
}

// refuseCSRF returns why a POST is refused, or "" when it carries the CSRF token and comes from the
// console's own pages.
func (s *Server) refuseCSRF(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return "the request came from another site (Sec-Fetch-Site: " + site + ")"
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Scheme != "http" || !strings.EqualFold(u.Host, r.Host) {
			return "the request came from another origin (" + origin + ")"
		}
	}
	token := r.Header.Get(CSRFHeader)
	if token == "" {
		token = r.PostFormValue(CSRFField)
	}
	if token == "" || !equalSecrets(token, s.csrf) {
		return "the form's CSRF token is missing or wrong"
	}
	return ""
}
