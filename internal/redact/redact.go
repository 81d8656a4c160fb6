// Package redact hides the credentials that a URL may carry, so that it can be shown, as in an endpoint's
// status.url (the URL column of kubectl get). It imports nothing from Kubernetes, so that the operator and
// the kubectl plugin can both apply the same rule.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces every redacted part.
const Mask = "***"

// URL returns raw with its user information, each query value and its fragment replaced by Mask. The
// scheme, host, path and query keys stay, so that a person can still tell endpoints apart. A URL that
// does not parse is not shown at all, since its parts cannot be told apart.
//
// Secrets in the path itself (as in some chat webhook URLs) are not recognized and stay visible.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.Opaque != "" {
		u.Opaque = Mask
	}
	hasUser := u.User != nil
	if hasUser {
		u.User = url.User(Mask)
	}
	u.RawQuery = redactQuery(u.RawQuery)
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = Mask, ""
	}
	out := u.String()
	if hasUser {
		// url.User percent-encodes the mask; show it as the query and fragment show it.
		out = strings.Replace(out, "//"+u.User.String()+"@", "//"+Mask+"@", 1)
	}
	return out
}

// redactQuery keeps the keys of a raw query and masks the values. A part without "=" may itself be a
// token, so it is masked whole.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		key, _, hasValue := strings.Cut(part, "=")
		switch {
		case hasValue:
			parts[i] = key + "=" + Mask
		case part != "":
			parts[i] = Mask
		}
	}
	return strings.Join(parts, "&")
}
