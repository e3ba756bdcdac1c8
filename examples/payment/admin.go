package main

import (
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

// requireAdmin wraps h so that it needs the admin token (see
// httpapi.Tokens.RequireAdmin); every refusal is counted in
// payment_invalid_requests_total.
func (s *Service) requireAdmin(h http.Handler) http.Handler {
	t := httpapi.Tokens{Admin: s.cfg.AdminToken.Reveal(), Realm: adminRealm}
	return t.RequireAdmin(h, func(_ *http.Request, e *httpapi.Error) {
		s.badRequests.WithLabelValues(strconv.Itoa(e.Status)).Inc()
	})
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
