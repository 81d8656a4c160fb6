package console

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A connection left open and idle is closed by the console after its idle timeout, so that idle
// connections cannot pile up; one that never finishes sending its request is closed too.
func TestIdleAndSlowConnectionsAreClosed(t *testing.T) {
	saved := connectionTimeouts
	connectionTimeouts.read, connectionTimeouts.idle = 300*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { connectionTimeouts = saved })

	s := newConsole(t, newNamespace(t), nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	closedByServer := func(conn net.Conn, what string) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			var timeout net.Error
			if errors.As(err, &timeout) && timeout.Timeout() {
				t.Errorf("%s: still open after 5s", what)
			}
		}
	}

	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+consoleHost+"/static/console.js", nil)
	if err := req.Write(idle); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(idle), req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	closedByServer(idle, "an idle keep-alive connection")

	slow, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "POST /events/redeliver-failed HTTP/1.1\r\nHost: "+consoleHost+
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nphase="); err != nil {
		t.Fatal(err)
	}
	closedByServer(slow, "a request whose body never comes")
}
