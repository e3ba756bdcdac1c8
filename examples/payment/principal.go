package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/taipattern/taikit/examples/internal/httpapi"
)

// The API principal is who the payment API's callers are, as the
// operator names them (-api-principal): the owner of their idempotency
// keys, as a Stripe account owns its keys. A token only proves a caller
// is the principal, so the keys stay where they are when it changes: a
// token rotated (-api-token, with the old one as -api-token-previous
// while clients move), a token set where there was none, or dropped.
// Another principal's key of the same name is another key, also in an
// idempotency bucket that services of several principals share.
const defaultPrincipal = "default"

// maxPrincipalLen bounds -api-principal.
const maxPrincipalLen = 64

// checkPrincipal reports a name -api-principal does not take: 1 to 64
// letters, digits, '_', '-' or '.'.
func checkPrincipal(name string) error {
	ok := name != "" && len(name) <= maxPrincipalLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
	}
	if !ok {
		return fmt.Errorf("-api-principal %q must be 1 to %d letters, digits, '_', '-' or '.'", clip(name), maxPrincipalLen)
	}
	return nil
}

// principalScope is the prefix of the idempotency keys of principal. The
// default principal's keys have none, as every key had on a service
// without a token before principals were named, so those keys hold. Any
// other's prefix ends in a NUL, which no Idempotency-Key holds: no key of
// the default principal reads as one of another's.
func principalScope(principal string) string {
	if principal == "" || principal == defaultPrincipal {
		return ""
	}
	return principal + "\x00"
}

// requireAPI wraps h so that it needs the API token, or the previous one
// while it is set (-api-token-previous): both are the one principal's.
func (s *Service) requireAPI(tokens httpapi.Tokens, h http.Handler, reject func(*http.Request, *httpapi.Error)) http.Handler {
	guarded := tokens.RequireAPI(h, reject)
	previous := s.cfg.APITokenPrevious.Reveal()
	if tokens.API == "" || previous == "" {
		return guarded
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if httpapi.Matches(r, previous) {
			h.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// checkPreviousToken reports a -api-token-previous that cannot be used:
// one without -api-token, equal to it or to the admin token, or one no
// request could carry.
func (c *Config) checkPreviousToken() error {
	prev := c.APITokenPrevious.Reveal()
	switch {
	case prev == "":
		return nil
	case !c.APIToken.IsSet():
		return errors.New("-api-token-previous needs -api-token: it is the token clients move away from, -api-token the one they move to")
	case prev == c.APIToken.Reveal():
		return errors.New("-api-token-previous is -api-token; give the token clients move away from, or none")
	}
	if err := (httpapi.Tokens{API: prev, Admin: c.AdminToken.Reveal()}).Validate(); err != nil {
		return fmt.Errorf("-api-token-previous: %w", err)
	}
	return nil
}
