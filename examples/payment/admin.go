package main

import (
	"crypto/subtle"
	"net/http"
	"strconv"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/httpapi"
)

// adminRealm is the HTTP authentication realm of everything the admin
// token guards: the admin API and the board. One realm, so that a browser
// logged in on the board sends the same credentials, without asking
// again, when it follows the board's links into the admin API.
const adminRealm = "payment admin"

// isAdmin reports whether r carries token, the admin token, as a Bearer
// token or as the password of HTTP Basic (any user name), in constant
// time. No request carries an empty token.
func isAdmin(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	if httpapi.Matches(r, token) {
		return true
	}
	_, pass, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(pass), []byte(token)) == 1
}

// requireAdmin wraps h so that it needs the admin token, as isAdmin takes
// it. Without an admin token configured it answers 403: the route is off.
// A request without the token, or with a wrong one, gets 401 with a
// challenge for both schemes (a browser asks for the Basic password).
// Every refusal is counted in payment_invalid_requests_total. A change
// (any method but GET, HEAD or OPTIONS) made by a browser from another
// site is refused with 403: a browser sends a Basic password it knows on
// its own, with any page's requests.
func (s *Service) requireAdmin(h http.Handler) http.Handler {
	token := s.cfg.AdminToken
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.refuse(w, &requestError{Status: http.StatusForbidden, Code: "cross_origin",
			Message: "a change from a page of another site is refused"})
	}))
	guarded := csrf.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case token == "":
			s.refuse(w, &requestError{Status: http.StatusForbidden, Code: "forbidden",
				Message: "this action needs the service to be started with an admin token (-admin-token)"})
		case !isAdmin(r, token):
			w.Header().Add("WWW-Authenticate", `Basic realm="`+adminRealm+`", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="`+adminRealm+`"`)
			s.refuse(w, &requestError{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "a valid admin token is required: as a Bearer token, or as the HTTP Basic password (any user name)"})
		default:
			guarded.ServeHTTP(w, r)
		}
	})
}

// refuse answers e and counts it by its status.
func (s *Service) refuse(w http.ResponseWriter, e *requestError) {
	s.badRequests.WithLabelValues(strconv.Itoa(e.Status)).Inc()
	writeError(w, e)
}

// withoutLinks returns p with its rows' links removed: the board of a
// service without an admin token links to no admin route, as they are
// all off.
func withoutLinks(p andon.Panel) andon.Panel {
	rows := p.Rows
	p.Rows = func() []andon.PanelRow {
		rs := rows()
		out := make([]andon.PanelRow, len(rs))
		for i, r := range rs {
			r.Link = ""
			out[i] = r
		}
		return out
	}
	return p
}
