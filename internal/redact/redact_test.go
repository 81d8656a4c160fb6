package redact

import "testing"

func TestURL(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"plain", "https://hooks.example.com/webhook", "https://hooks.example.com/webhook"},
		{"port and path kept", "http://127.0.0.1:8080/a/b", "http://127.0.0.1:8080/a/b"},
		{"user and password", "http://user:s3cr3t@host/path", "http://***@host/path"},
		{"user only", "https://token@host/", "https://***@host/"},
		{"empty user information", "https://@host/", "https://***@host/"},
		{"query values", "http://host/path?token=abc&mode=x", "http://host/path?token=***&mode=***"},
		{"everything", "http://user:s3cr3t@host/path?token=abc", "http://***@host/path?token=***"},
		{"empty value", "http://host/?token=", "http://host/?token=***"},
		{"bare token in the query", "http://host/?abc123&k=v", "http://host/?***&k=***"},
		{"value with =", "http://host/?sig=a=b==", "http://host/?sig=***"},
		{"empty parts kept", "http://host/?a=1&&b=2", "http://host/?a=***&&b=***"},
		{"escaped key kept as written", "http://host/?x%20y=1", "http://host/?x%20y=***"},
		{"fragment", "http://host/p#access_token=abc", "http://host/p#***"},
		{"unparsable", "http://host/%zz?token=abc", "(unparsable URL)"},
		{"opaque", "mailto:someone@example.com", "mailto:***"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.raw); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}
