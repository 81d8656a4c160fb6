// Package console is the web console of `kubectl webhook ui`: the webhook contract's settings page (the
// callback URL, the signing secret's name, a Send test webhook button) and the state of every endpoint and
// event, served on loopback to the user's browser. It acts with the user's own Kubernetes client, so it
// can do exactly what the user's RBAC allows, and it reads only WebhookEndpoints and DocumentEvents:
// never a Secret.
//
// Pages are rendered on the server by html/template, which escapes every value taken from an object;
// the embedded style sheet and one script are the only other files, and nothing is loaded from the
// internet. Access needs the random token of the printed URL, and every change a CSRF token as well
// (see secure).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Options configure a console.
type Options struct {
	// Client acts on the cluster with the user's credentials.
	Client client.Client
	// Namespace limits the console to one namespace; "" shows all namespaces.
	Namespace string
	// Refresh is how often pages update themselves; 0 means DefaultRefresh.
	Refresh time.Duration
	// Now returns the current time; nil means time.Now. Tests pin it.
	Now func() time.Time
}

// DefaultRefresh is how often a page re-reads what it shows.
const DefaultRefresh = 3 * time.Second

// Server is a console bound to one listening address.
type Server struct {
	opts  Options
	pages *pageTemplates
	// token grants access; csrf must accompany every POST. Both are random per start.
	token, csrf string
	// cookieName holds the port, since browsers share cookies of a host across its ports: two consoles
	// on 127.0.0.1 must not overwrite each other's cookie.
	cookieName string
	// host is the address the console is reached at, as printed; hosts lists every accepted Host header.
	host    string
	hosts   []string
	anyHost bool
	handler http.Handler
}

// New makes a console that will answer requests for addr, the host:port that the listener is bound to.
func New(opts Options, addr net.Addr) (*Server, error) {
	if opts.Client == nil {
		return nil, errors.New("console: no Kubernetes client")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("console: listening address %s is not TCP", addr)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(tcp.Port)
	s := &Server{
		opts:       opts,
		pages:      pages,
		token:      randomToken(),
		csrf:       randomToken(),
		cookieName: "webhook-console-" + port,
		host:       net.JoinHostPort(tcp.IP.String(), port),
		anyHost:    tcp.IP.IsUnspecified(),
	}
	s.hosts = []string{s.host}
	if tcp.IP.IsLoopback() {
		// The same loopback address under the name browsers and people type.
		s.hosts = append(s.hosts, net.JoinHostPort("localhost", port))
	}
	s.handler = s.secure(s.routes())
	return s, nil
}

// URL returns the address to open: the console's start page with the access token.
func (s *Server) URL() string {
	u := url.URL{Scheme: "http", Host: s.host, Path: "/", RawQuery: TokenParam + "=" + s.token}
	return u.String()
}

// ServeHTTP answers one request, with the access rules applied.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// connectionTimeouts bound what one connection may hold: reading a request (a form is a few fields),
// writing a page (the events page reads up to a few thousand events from the API server), and staying
// open idle between requests, so that connections left open cannot pile up.
var connectionTimeouts = struct{ read, write, idle time.Duration }{read: 30 * time.Second, write: time.Minute, idle: time.Minute}

// Serve answers requests on the listener until ctx ends, then stops within a few seconds.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       connectionTimeouts.read,
		WriteTimeout:      connectionTimeouts.write,
		IdleTimeout:       connectionTimeouts.idle,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static") // the embedded folder always exists
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/endpoints", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /endpoints", s.endpointsPage)
	mux.HandleFunc("GET /namespaces/{namespace}/endpoints/{name}", s.endpointPage)
	mux.HandleFunc("POST /namespaces/{namespace}/endpoints/{name}/test", s.sendTest)
	mux.HandleFunc("GET /events", s.eventsPage)
	mux.HandleFunc("GET /events/redeliver-failed", s.confirmRedeliverFailed)
	mux.HandleFunc("POST /events/redeliver-failed", s.redeliverFailed)
	mux.HandleFunc("GET /namespaces/{namespace}/events/{name}", s.eventPage)
	mux.HandleFunc("POST /namespaces/{namespace}/events/{name}/redeliver", s.redeliverEvent)
	return mux
}
