package kanbanhttp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
)

const token = "0123456789abcdef-token"

type order struct {
	N int `json:"n"`
}

// deadQueue returns a memory queue whose messages o-1 … o-n (keys k-1,
// k-2, k-1, …) were refused: n dead letters, oldest first.
func deadQueue(t *testing.T, capacity, n int) *kanban.Memory[order] {
	t.Helper()
	q, err := kanban.NewMemory[order](kanban.MemoryOptions{Capacity: capacity})
	require.NoError(t, err)
	refuse(t, q, n)
	return q
}

func refuse(t *testing.T, q *kanban.Memory[order], n int) {
	t.Helper()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 1; i <= n; i++ {
		require.NoError(t, q.Publish(ctx, kanban.Message[order]{ID: "o-" + strconv.Itoa(i), Key: "k-" + strconv.Itoa(1+(i+1)%2), Payload: order{N: i}}))
	}
	seen := 0
	err := q.Consume(ctx, func(_ context.Context, d kanban.Delivery[order]) error {
		seen++
		if seen == n {
			cancel()
		}
		return kanban.Permanent(errors.New("refused " + d.Key))
	}, kanban.ConsumeOptions{})
	require.NoError(t, err)
}

type server struct {
	t *testing.T
	h http.Handler
}

func newServer(t *testing.T, opts kanbanhttp.Options, queues map[string]kanban.DeadLetterStore) (*kanbanhttp.Handler, *server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := kanbanhttp.New(opts)
	require.NoError(t, err)
	for name, q := range queues {
		require.NoError(t, h.AddQueue(name, q))
	}
	return h, &server{t: t, h: h}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (s *server) do(method, target, body string, hdr ...string) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	out := response{status: w.Code, header: w.Header(), raw: w.Body.Bytes()}
	if strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		require.NoError(s.t, json.Unmarshal(out.raw, &out.body), "body %s", out.raw)
	}
	return out
}

func (r response) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// pages lists target and the pages its next links lead to, up to five,
// calling between before each next one, and returns the IDs listed.
func (s *server) pages(t *testing.T, target string, between func()) []string {
	t.Helper()
	var got []string
	for range 5 {
		r := s.do("GET", target, "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
		got = append(got, r.ids()...)
		next, _ := r.body["next"].(string)
		if next == "" {
			break
		}
		target = next
		between()
	}
	return got
}

func (r response) ids() []string {
	out := []string{}
	dls, _ := r.body["dead_letters"].([]any)
	for _, d := range dls {
		out = append(out, d.(map[string]any)["id"].(string))
	}
	return out
}

var bearer = []string{"Authorization", "Bearer " + token}

func TestListDeadLetters(t *testing.T) {
	q := deadQueue(t, 0, 5)
	_, s := newServer(t, kanbanhttp.Options{Prefix: "/ops"}, map[string]kanban.DeadLetterStore{"orders": q})

	r := s.do("GET", "/ops/queues/orders/deadletters", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.Equal(t, []string{"o-1", "o-2", "o-3", "o-4", "o-5"}, r.ids())
	assert.EqualValues(t, 5, r.body["total"])
	assert.NotContains(t, r.body, "next_cursor")
	first := r.body["dead_letters"].([]any)[0].(map[string]any)
	assert.EqualValues(t, 1, first["seq"])
	assert.Equal(t, "k-1", first["key"])
	assert.Equal(t, "refused k-1", first["reason"])
	assert.EqualValues(t, 1, first["attempts"])
	assert.Equal(t, map[string]any{"n": 1.0}, first["payload"], "the payload as JSON")
	_, err := time.Parse(time.RFC3339Nano, first["time"].(string))
	assert.NoError(t, err)

	// Pages, newest first, following next.
	got := s.pages(t, "/ops/queues/orders/deadletters?order=newest&limit=2", func() {})
	assert.Equal(t, []string{"o-5", "o-4", "o-3", "o-2", "o-1"}, got)

	for query, want := range map[string][]string{
		"key=k-2":                                {"o-2", "o-4"},
		"reason=d+k-1":                           {"o-1", "o-3", "o-5"},
		"id=o-3":                                 {"o-3"},
		"seq=4":                                  {"o-4"},
		"older_than=1h":                          {},
		"older_than=0s":                          {"o-1", "o-2", "o-3", "o-4", "o-5"},
		"key=k-2&limit=1":                        {"o-2"},
		"all=true":                               {"o-1", "o-2", "o-3", "o-4", "o-5"},
		"all=false":                              {"o-1", "o-2", "o-3", "o-4", "o-5"},
		"all=true&limit=2&order=newest&cursor=4": {"o-3", "o-2"},
	} {
		r := s.do("GET", "/ops/queues/orders/deadletters?"+query, "")
		require.Equal(t, http.StatusOK, r.status, "%s: %s", query, r.raw)
		assert.Equal(t, want, r.ids(), query)
	}

	// all, as in a delete's query, takes no other field.
	r = s.do("GET", "/ops/queues/orders/deadletters?all=true&key=k-2", "")
	require.Equal(t, http.StatusBadRequest, r.status, "%s", r.raw)
	assert.Contains(t, r.body["error"].(map[string]any)["message"], "All matches every dead letter")
}

func TestListQueues(t *testing.T) {
	q := deadQueue(t, 0, 2)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[order]{ID: "waiting"}))
	_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("GET", "/queues", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	qs := r.body["queues"].([]any)
	require.Len(t, qs, 1)
	o := qs[0].(map[string]any)
	assert.Equal(t, "orders", o["name"])
	assert.Equal(t, "/queues/orders/deadletters", o["dead_letters"])
	b := o["backlog"].(map[string]any)
	assert.EqualValues(t, 1, b["depth"])
	assert.EqualValues(t, 2, b["dead_letters"])
	assert.GreaterOrEqual(t, b["oldest_seconds"].(float64), 0.0)
	assert.Equal(t, map[string]any{
		"published": 3.0, "duplicates": 0.0, "handled": 0.0, "retried": 0.0, "redelivered": 0.0,
		"dead_lettered": 2.0, "redriven": 0.0, "in_flight": 0.0,
	}, o["stats"])
}

func TestBadRequests(t *testing.T) {
	q := deadQueue(t, 0, 2)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tc := range []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"GET", "/queues/nope/deadletters", "", 404, "queue_not_found"},
		{"GET", "/queues/orders/deadletters?limit=0", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?limit=1001", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?limit=ten", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?order=sideways", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?cursor=x", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?kye=k-1", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?key=a&key=b", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?older_than=-1h", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?older_than=soon", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?seq=0", "", 400, "bad_request"},
		{"GET", "/queues/orders/deadletters?reason=" + strings.Repeat("x", kanban.MaxFilterText+1), "", 400, "bad_request"},
		{"GET", "/queues?x=1", "", 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{}`, 400, "empty_filter"},
		{"POST", "/queues/orders/deadletters/redrive", `{"all":true,"key":"k-1"}`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"keys":"k-1"}`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"key":"k-1"} {"all":true}`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"key":`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"seq":-1}`, 400, "bad_request"},
		// seq 0 is no dead letter's: with a key it would redrive every one
		// of the key, where the client meant one.
		{"POST", "/queues/orders/deadletters/redrive", `{"seq":0,"key":"k-1"}`, 400, "bad_request"},
		{"DELETE", "/queues/orders/deadletters?seq=0&key=k-1", "", 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"older_than":"1 day"}`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive?key=k-1", `{"key":"k-1"}`, 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/redrive", `{"key":"` + strings.Repeat("x", kanbanhttp.DefaultMaxBodyBytes) + `"}`, 413, "body_too_large"},
		{"POST", "/queues/orders/deadletters/x/redrive", "", 400, "bad_request"},
		{"POST", "/queues/orders/deadletters/99/redrive", "", 404, "dead_letter_not_found"},
		{"POST", "/queues/nope/deadletters/1/redrive", "", 404, "queue_not_found"},
		{"DELETE", "/queues/orders/deadletters", "", 400, "empty_filter"},
		{"DELETE", "/queues/orders/deadletters?all=maybe", "", 400, "bad_request"},
		{"DELETE", "/queues/orders/deadletters?limit=1&all=true", "", 400, "bad_request"},
		{"DELETE", "/queues/orders/deadletters/0", "", 400, "bad_request"},
		{"DELETE", "/queues/orders/deadletters/99", "", 404, "dead_letter_not_found"},
	} {
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Equal(t, tc.status, r.status, "%s %.80s: %s", tc.method, tc.target, r.raw)
		assert.Equal(t, tc.code, r.code(), "%s %.80s", tc.method, tc.target)
		assert.NotEmpty(t, r.body["error"].(map[string]any)["message"])
	}
	// A body that is not JSON.
	r := httptest.NewRequest("POST", "/queues/orders/deadletters/redrive", strings.NewReader("key=k-1"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusUnsupportedMediaType, w.Code)

	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "no bad request changed anything")
}

// The body's media type is read as RFC 9110 has it: type and subtype in
// any case, parameters after a semicolon; a type that only begins with
// "application/json" is another type.
func TestRedriveContentType(t *testing.T) {
	for _, tc := range []struct {
		contentType string
		status      int
	}{
		{"application/json", 200},
		{"Application/JSON", 200},
		{"application/json; charset=utf-8", 200},
		{"application/json ; charset=UTF-8", 200},
		{"application/jsonl", 415},
		{"application/json-seq", 415},
		{"application/json5", 415},
		{"", 415},
		{"application/json; charset", 415},
	} {
		q := deadQueue(t, 0, 1)
		_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
		r := s.do("POST", "/queues/orders/deadletters/redrive", `{"all":true}`, "Authorization", "Bearer "+token, "Content-Type", tc.contentType)
		assert.Equal(t, tc.status, r.status, "%q: %s", tc.contentType, r.raw)
		if tc.status == 415 {
			assert.Equal(t, "unsupported_media_type", r.code(), "%q", tc.contentType)
		}
	}
}

func TestMutationsAreRefusedUnlessConfigured(t *testing.T) {
	q := deadQueue(t, 0, 2)
	_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/queues/orders/deadletters/redrive", `{"all":true}`},
		{"POST", "/queues/orders/deadletters/1/redrive", ""},
		{"DELETE", "/queues/orders/deadletters?all=true", ""},
		{"DELETE", "/queues/orders/deadletters/1", ""},
	} {
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Equal(t, http.StatusForbidden, r.status, "%s %s", tc.method, tc.target)
		assert.Equal(t, "mutations_disabled", r.code())
	}
	assert.Equal(t, http.StatusOK, s.do("GET", "/queues/orders/deadletters", "").status, "reads are open")
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2)
}

func TestToken(t *testing.T) {
	q := deadQueue(t, 0, 3)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("POST", "/queues/orders/deadletters/1/redrive", "")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Equal(t, "unauthorized", r.code())
	assert.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
	r = s.do("POST", "/queues/orders/deadletters/1/redrive", "", "Authorization", "Bearer "+token+"x")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	r = s.do("POST", "/queues/orders/deadletters/1/redrive", "", "Authorization", token)
	assert.Equal(t, http.StatusUnauthorized, r.status, "the token without Bearer")

	r = s.do("POST", "/queues/orders/deadletters/1/redrive", "", bearer...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["redriven"])
	r = s.do("POST", "/queues/orders/deadletters/1/redrive", "", bearer...)
	assert.Equal(t, http.StatusNotFound, r.status, "redriven already")
	r = s.do("POST", "/queues/orders/deadletters/redrive", `{"key":"k-2"}`, bearer...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["redriven"])
	r = s.do("DELETE", "/queues/orders/deadletters/3", "", bearer...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["deleted"])
	assert.Equal(t, 2, q.Len(), "o-1 and o-2 back in the queue")
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Empty(t, dl)

	// Cross-site requests from a browser are refused, token or not.
	r = s.do("DELETE", "/queues/orders/deadletters?all=true", "", "Authorization", "Bearer "+token, "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, "cross_origin", r.code())
}

func TestAuthorizeAndReads(t *testing.T) {
	q := deadQueue(t, 0, 3)
	var logged bytes.Buffer
	_, s := newServer(t, kanbanhttp.Options{
		AuthorizeReads: true,
		Logger:         slog.New(slog.NewTextHandler(&logged, nil)),
		Authorize: func(r *http.Request) error {
			if r.Header.Get("X-Role") != "operator" {
				return errors.New("operators only")
			}
			return nil
		},
	}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("GET", "/queues/orders/deadletters", "")
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, "forbidden", r.code())
	assert.Equal(t, "operators only", r.body["error"].(map[string]any)["message"])
	assert.Equal(t, http.StatusForbidden, s.do("GET", "/queues", "").status)
	assert.Equal(t, http.StatusOK, s.do("GET", "/queues", "", "X-Role", "operator").status)

	r = s.do("DELETE", "/queues/orders/deadletters?key=k-1&older_than=0s", "", "X-Role", "operator")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 2, r.body["deleted"])
	r = s.do("DELETE", "/queues/orders/deadletters?all=true", "", "X-Role", "operator")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["deleted"])
	assert.Contains(t, logged.String(), "kanbanhttp: dead letters delete")
	assert.Contains(t, logged.String(), "deleted=2")
	assert.NotContains(t, logged.String(), `"n"`, "no payload in the log")
}

func TestRedriveIntoAFullQueue(t *testing.T) {
	q := deadQueue(t, 3, 3)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[order]{ID: "filler-1"}))
	require.NoError(t, q.Publish(context.Background(), kanban.Message[order]{ID: "filler-2"}))
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("POST", "/queues/orders/deadletters/redrive", `{"all":true}`, bearer...)
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, "queue_full", r.code())
	assert.EqualValues(t, 1, r.body["redriven"], "how far it got")
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "what did not fit stays")
}

// rawCodec stores strings as they are: not JSON.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return []byte(v.(string)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*string)) = string(data); return nil }

func TestPayloadThatIsNotJSON(t *testing.T) {
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Codec: rawCodec{}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "bin", Payload: "\x00\x01 not json"}))
	require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
		cancel()
		return kanban.Permanent(errors.New("no"))
	}, kanban.ConsumeOptions{}))
	_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"bin": q})
	r := s.do("GET", "/queues/bin/deadletters", "")
	require.Equal(t, http.StatusOK, r.status)
	d := r.body["dead_letters"].([]any)[0].(map[string]any)
	assert.NotContains(t, d, "payload")
	assert.Equal(t, "AAEgbm90IGpzb24=", d["payload_base64"])
}

func TestNewAndAddQueueValidate(t *testing.T) {
	for _, opts := range []kanbanhttp.Options{
		{Prefix: "ops"}, {Prefix: "/ops/"}, {Prefix: "/o{p}s"},
		{Token: "short"},
		{MaxBodyBytes: -1},
		{TrustedOrigins: []string{"not a url"}},
	} {
		_, err := kanbanhttp.New(opts)
		assert.Error(t, err, "%+v", opts)
	}
	// A Prefix no request path can match, being unclean, or holding a
	// control character, is an error, not a panic of the ServeMux.
	for _, prefix := range []string{"/ops/../admin", "/ops//x", "/ops/.", "/.", "/a/..", "/o\tps", "/o\x00ps"} {
		assert.NotPanics(t, func() {
			_, err := kanbanhttp.New(kanbanhttp.Options{Prefix: prefix})
			assert.ErrorContains(t, err, "kanbanhttp: Options.Prefix", "%q", prefix)
		}, "%q", prefix)
	}
	h, err := kanbanhttp.New(kanbanhttp.Options{Prefix: "/ops/queue-admin"})
	require.NoError(t, err)
	q := deadQueue(t, 0, 0)
	require.NoError(t, h.AddQueue("orders", q))
	r := httptest.NewRequest("GET", "/ops/queue-admin/queues", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusOK, w.Code, "a Prefix of two segments")

	h, err = kanbanhttp.New(kanbanhttp.Options{})
	require.NoError(t, err)
	assert.Error(t, h.AddQueue("", q))
	assert.Error(t, h.AddQueue("a/b", q))
	assert.Error(t, h.AddQueue("orders", nil))
	require.NoError(t, h.AddQueue("orders", q))
	assert.ErrorContains(t, h.AddQueue("orders", q), "served already")
}

func TestVacuousFilterNeedsAll(t *testing.T) {
	q, other := deadQueue(t, 0, 5), deadQueue(t, 0, 4)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q, "other": other})
	for _, tc := range []struct{ method, target, body string }{
		{"DELETE", "/queues/orders/deadletters?older_than=0s", ""},
		{"DELETE", "/queues/orders/deadletters?older_than=0", ""},
		{"DELETE", "/queues/orders/deadletters?older_than=-0s", ""},
		{"DELETE", "/queues/orders/deadletters?older_than=0s&key=&reason=&id=", ""},
		{"DELETE", "/queues/orders/deadletters?older_than=0s&all=false", ""},
		{"POST", "/queues/orders/deadletters/redrive", `{"older_than":"0s"}`},
		{"POST", "/queues/orders/deadletters/redrive", `{"older_than":"0h","key":"","all":false}`},
	} {
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s %s %s: %s", tc.method, tc.target, tc.body, r.raw)
		assert.Equal(t, "empty_filter", r.code(), "%s %s %s", tc.method, tc.target, tc.body)
		assert.Contains(t, r.body["error"].(map[string]any)["message"], "all=true")
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 5, "nothing redriven or deleted")

	// With all=true the vacuous field is no other field.
	r := s.do("POST", "/queues/orders/deadletters/redrive", `{"older_than":"0s","all":true}`, bearer...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 5, r.body["redriven"])
	r = s.do("DELETE", "/queues/other/deadletters?older_than=0s&all=true", "", bearer...)
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 4, r.body["deleted"])
}

func TestRouteErrorsAreJSON(t *testing.T) {
	q := deadQueue(t, 0, 3)
	_, s := newServer(t, kanbanhttp.Options{Prefix: "/ops", Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tc := range []struct {
		method, target string
		status         int
		code, allow    string
	}{
		{"GET", "/nope", 404, "not_found", ""},
		{"GET", "/queues", 404, "not_found", ""},
		{"GET", "/ops/queues/orders", 404, "not_found", ""},
		{"GET", "/ops/queues/orders/deadletters/1/redrive", 405, "method_not_allowed", "POST"},
		{"GET", "/ops/queues/orders/deadletters/2", 405, "method_not_allowed", "DELETE"},
		{"PUT", "/ops/queues/orders/deadletters", 405, "method_not_allowed", "DELETE, GET, HEAD"},
		{"POST", "/ops/queues", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/ops/queues/orders/deadletters/redrive", 405, "method_not_allowed", "DELETE, POST"},
	} {
		r := s.do(tc.method, tc.target, "", bearer...)
		assert.Equal(t, tc.status, r.status, "%s %s: %s", tc.method, tc.target, r.raw)
		assert.Equal(t, "application/json", r.header.Get("Content-Type"), "%s %s", tc.method, tc.target)
		assert.Equal(t, tc.code, r.code(), "%s %s: %s", tc.method, tc.target, r.raw)
		assert.Contains(t, r.body["error"].(map[string]any)["message"], tc.target)
		assert.Equal(t, tc.allow, r.header.Get("Allow"), "%s %s", tc.method, tc.target)
		if tc.allow != "" {
			details, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
			assert.Equal(t, tc.allow, strings.Join(toStrings(details["allow"]), ", "), "%s %s", tc.method, tc.target)
		}
		assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	}
	r := s.do("GET", "/ops/queues/orders/deadletters/2", "")
	assert.Contains(t, r.body["error"].(map[string]any)["message"], "read one dead letter with GET /ops/queues/orders/deadletters?seq=2")
	r = s.do("GET", "/ops/queues/orders/deadletters?seq=2", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.Equal(t, []string{"o-2"}, r.ids())
	r = s.do("GET", "/ops/queues/orders/deadletters/redrive", "")
	assert.NotContains(t, r.body["error"].(map[string]any)["message"], "seq=")

	// A path to clean is still redirected.
	r = s.do("GET", "/ops//queues", "")
	assert.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect}, r.status, "%s", r.raw)
	assert.Equal(t, "/ops/queues", r.header.Get("Location"))
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	q := deadQueue(t, 0, 3)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for i, auth := range []string{"bearer " + token, "BEARER " + token, "bEaReR  " + token} {
		r := s.do("DELETE", "/queues/orders/deadletters/"+strconv.Itoa(i+1), "", "Authorization", auth)
		assert.Equal(t, http.StatusOK, r.status, "%q: %s", auth, r.raw)
	}
	for _, auth := range []string{"Basic " + token, "Bearer" + token, "Bearer", " Bearer " + token, "Bearer " + token + " "} {
		r := s.do("POST", "/queues/orders/deadletters/1/redrive", "", "Authorization", auth)
		assert.Equal(t, http.StatusUnauthorized, r.status, "%q", auth)
	}
}

// secret is backend error text a caller must not see.
const secret = "nats: dial nats://admin:hunter2@10.1.2.3:4222: connection refused"

// brokenStore is a queue whose server fails with secret.
type brokenStore struct{ err error }

func (b brokenStore) ListDeadLetters(context.Context, kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	return kanban.DeadLetterPage{}, b.err
}

func (b brokenStore) RedriveDeadLetters(context.Context, kanban.DeadLetterFilter) (int, error) {
	return 0, b.err
}

func (b brokenStore) DeleteDeadLetters(context.Context, kanban.DeadLetterFilter) (int, error) {
	return 0, b.err
}

func (b brokenStore) Backlog(context.Context) (kanban.Backlog, error) { return kanban.Backlog{}, b.err }

func TestBackendErrorsAreNotEchoed(t *testing.T) {
	var logged bytes.Buffer
	_, s := newServer(t, kanbanhttp.Options{Token: token, Logger: slog.New(slog.NewTextHandler(&logged, nil))},
		map[string]kanban.DeadLetterStore{
			"broken":  brokenStore{errors.New(secret)},
			"full":    brokenStore{fmt.Errorf("%w: %s", kanban.ErrFull, secret)},
			"slow":    brokenStore{fmt.Errorf("%s: %w", secret, context.DeadlineExceeded)},
			"missing": brokenStore{fmt.Errorf("%s: %w", secret, kanban.ErrDeadLetterNotFound)},
		})
	for _, tc := range []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"GET", "/queues/broken/deadletters", "", 502, "backend_error"},
		{"POST", "/queues/broken/deadletters/redrive", `{"key":"k"}`, 502, "backend_error"},
		{"POST", "/queues/broken/deadletters/1/redrive", "", 502, "backend_error"},
		{"DELETE", "/queues/broken/deadletters?all=true", "", 502, "backend_error"},
		{"DELETE", "/queues/broken/deadletters/1", "", 502, "backend_error"},
		{"POST", "/queues/full/deadletters/redrive", `{"all":true}`, 503, "queue_full"},
		{"GET", "/queues/slow/deadletters", "", 504, "timeout"},
		{"DELETE", "/queues/missing/deadletters/1", "", 404, "dead_letter_not_found"},
	} {
		logged.Reset()
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Equal(t, tc.status, r.status, "%s %s: %s", tc.method, tc.target, r.raw)
		assert.Equal(t, tc.code, r.code(), "%s %s", tc.method, tc.target)
		assert.NotEmpty(t, r.body["error"].(map[string]any)["message"])
		for _, leak := range []string{"hunter2", "10.1.2.3", "nats"} {
			assert.NotContains(t, string(r.raw), leak, "%s %s", tc.method, tc.target)
		}
		if tc.status >= 500 {
			assert.Contains(t, logged.String(), "hunter2", "%s %s: the log has the detail", tc.method, tc.target)
			assert.Equal(t, 1, strings.Count(logged.String(), "hunter2"), "%s %s: logged once", tc.method, tc.target)
		}
	}
	logged.Reset()
	r := s.do("GET", "/queues", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.NotContains(t, string(r.raw), "hunter2")
	assert.NotEmpty(t, r.body["queues"].([]any)[0].(map[string]any)["backlog_error"])
	assert.Contains(t, logged.String(), "hunter2")
}

func toStrings(v any) []string {
	out := []string{}
	vs, _ := v.([]any)
	for _, x := range vs {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// A query that cannot be parsed is refused: the pair it spoils would be
// dropped, and the filter left wider than the one asked for.
func TestMalformedQueryIsRefused(t *testing.T) {
	q := deadQueue(t, 0, 4)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tc := range []struct{ method, target string }{
		{"DELETE", "/queues/orders/deadletters?reason=refused&key=k-1%zz"},
		{"DELETE", "/queues/orders/deadletters?reason=refused&key=k-1;x"},
		{"GET", "/queues/orders/deadletters?reason=refused&key=k-1%zz"},
		{"GET", "/queues?%zz"},
		{"POST", "/queues/orders/deadletters/1/redrive?%zz"},
		{"DELETE", "/queues/orders/deadletters/1?a=%zz"},
	} {
		r := s.do(tc.method, tc.target, "", bearer...)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s %s: %s", tc.method, tc.target, r.raw)
		assert.Equal(t, "bad_request", r.code(), "%s %s", tc.method, tc.target)
	}
	r := s.do("POST", "/queues/orders/deadletters/redrive?%zz", `{"key":"k-1"}`, bearer...)
	assert.Equal(t, http.StatusBadRequest, r.status, "%s", r.raw)
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 4, "no malformed request changed anything")
}

// A Token no request can present (one read from a file with its
// newline, say: a header's value loses the spaces around it and holds no
// control character) is an error naming the field, without the token.
func TestNewRefusesATokenNoRequestCanPresent(t *testing.T) {
	for _, tok := range []string{token + "\n", " " + token, token + " ", token + "\t", "0123456789\x00abcdef", "0123456789\rabcdef"} {
		_, err := kanbanhttp.New(kanbanhttp.Options{Token: tok})
		if assert.ErrorContains(t, err, "kanbanhttp: Options.Token", "%q", tok) {
			assert.NotContains(t, err.Error(), "0123456789", "the error does not show the token")
		}
	}
	h, err := kanbanhttp.New(kanbanhttp.Options{Token: "0123456789 abcdef"})
	require.NoError(t, err, "a space inside is sent as it is")
	require.NoError(t, h.AddQueue("orders", deadQueue(t, 0, 1)))
	s := &server{t: t, h: h}
	r := s.do("DELETE", "/queues/orders/deadletters/1", "", "Authorization", "Bearer 0123456789 abcdef")
	assert.Equal(t, http.StatusOK, r.status, "%s", r.raw)
}

// A delete takes its filter from the query alone: a body, where a
// redrive takes its filter, is refused rather than ignored, since the
// query's filter alone may select more than both together.
func TestDeleteRefusesABody(t *testing.T) {
	q := deadQueue(t, 0, 4)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, target := range []string{"/queues/orders/deadletters?reason=refused", "/queues/orders/deadletters/1"} {
		r := s.do("DELETE", target, `{"key":"k-1"}`, bearer...)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s: %s", target, r.raw)
		assert.Equal(t, "bad_request", r.code(), target)
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 4, "nothing was deleted")
	r := s.do("DELETE", "/queues/orders/deadletters?key=k-1", "", bearer...)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 2, r.body["deleted"])
}

// Redriving one dead letter takes no filter: a body, where a redrive of
// many takes its filter, is refused rather than ignored, since the
// dead letter would be redriven whether the filter matched it or not.
func TestRedriveOneRefusesABody(t *testing.T) {
	q := deadQueue(t, 0, 2)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("POST", "/queues/orders/deadletters/1/redrive", `{"key":"k-2"}`, bearer...)
	assert.Equal(t, http.StatusBadRequest, r.status, "%s", r.raw)
	assert.Equal(t, "bad_request", r.code())
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "nothing was redriven")
	r = s.do("POST", "/queues/orders/deadletters/1/redrive", "", bearer...)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["redriven"])
}

// TestAddQueueServesEveryNameItTakes: a queue AddQueue takes is served
// at the path GET /queues and the panels link to; "." and "..", which a
// request's path loses when it is cleaned (the ServeMux redirects it
// elsewhere), are refused.
func TestAddQueueServesEveryNameItTakes(t *testing.T) {
	q := deadQueue(t, 0, 1)
	for _, name := range []string{".", "..", "...", ".a", "a..", "v1.2", "-", "_"} {
		h, s := newServer(t, kanbanhttp.Options{Prefix: "/ops"}, nil)
		if err := h.AddQueue(name, q); err != nil {
			assert.Contains(t, []string{".", ".."}, name, "%q refused: %v", name, err)
			continue
		}
		assert.NotContains(t, []string{".", ".."}, name, "%q taken", name)
		r := s.do("GET", "/ops/queues", "")
		require.Equal(t, http.StatusOK, r.status)
		path := r.body["queues"].([]any)[0].(map[string]any)["dead_letters"].(string)
		r = s.do("GET", path, "")
		if assert.Equal(t, http.StatusOK, r.status, "%q at %s: %s", name, path, r.raw) {
			assert.Equal(t, []string{"o-1"}, r.ids(), "%q", name)
		}
	}
}

// A payload that would be JSON but for bytes that are not UTF-8 inside a
// string is no JSON (RFC 8259 asks for UTF-8): it is shown in base64, so
// the answer stays valid JSON and holds the payload's very bytes.
func TestPayloadThatIsJSONButForItsUTF8(t *testing.T) {
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Codec: rawCodec{}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	const payload = "{\"name\":\"caf\xe9\"}" // Latin-1, not UTF-8
	require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "latin1", Payload: payload}))
	require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
		cancel()
		return kanban.Permanent(errors.New("no"))
	}, kanban.ConsumeOptions{}))
	_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"latin1": q})
	r := s.do("GET", "/queues/latin1/deadletters", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.True(t, utf8.Valid(r.raw), "the answer is UTF-8: %q", r.raw)
	d := r.body["dead_letters"].([]any)[0].(map[string]any)
	require.NotContains(t, d, "payload")
	got, err := base64.StdEncoding.DecodeString(d["payload_base64"].(string))
	require.NoError(t, err)
	assert.Equal(t, payload, string(got), "the payload's bytes")
}

// TestHugeInputIsNotEchoedWhole: an error quoting what the caller sent
// quotes a bounded part of it, as it does of a path, so a request of
// megabytes is not answered with as many.
func TestHugeInputIsNotEchoedWhole(t *testing.T) {
	q := deadQueue(t, 0, 1)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	huge := strings.Repeat("x", 100<<10)
	for _, tc := range []struct{ method, target, body string }{
		{"GET", "/queues/orders/deadletters?limit=" + huge, ""},
		{"GET", "/queues/orders/deadletters?order=" + huge, ""},
		{"GET", "/queues/orders/deadletters?cursor=" + huge, ""},
		{"GET", "/queues/orders/deadletters?all=" + huge, ""},
		{"GET", "/queues/orders/deadletters?seq=" + huge, ""},
		{"GET", "/queues/orders/deadletters?older_than=" + huge, ""},
		{"GET", "/queues/orders/deadletters?" + huge + "=1", ""},
		{"GET", "/queues/" + huge + "/deadletters", ""},
		{"DELETE", "/queues/orders/deadletters/" + huge, ""},
		{"POST", "/queues/orders/deadletters/redrive", `{"older_than":"` + strings.Repeat("x", 60<<10) + `"}`},
		{"POST", "/queues/orders/deadletters/redrive", `{"` + strings.Repeat("x", 60<<10) + `":1}`},
	} {
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, r.status, "%.60s", tc.target)
		assert.Less(t, len(r.raw), 1000, "%s %.60s: %.300s", tc.method, tc.target, r.raw)
	}
}

// TestBodyOverTheLimitAfterItsFilter: a body over MaxBodyBytes is
// refused with 413 as the package says, also when its filter ends
// within the limit and what runs over it follows the filter.
func TestBodyOverTheLimitAfterItsFilter(t *testing.T) {
	q := deadQueue(t, 0, 2)
	_, s := newServer(t, kanbanhttp.Options{Token: token, MaxBodyBytes: 1 << 10}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tail := range []string{strings.Repeat(" ", 2<<10), " " + strings.Repeat("x", 2<<10), `{"key":"` + strings.Repeat("x", 2<<10) + `"}`} {
		r := s.do("POST", "/queues/orders/deadletters/redrive", `{"all":true}`+tail, bearer...)
		assert.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%s", r.raw)
		assert.Equal(t, "body_too_large", r.code())
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "nothing redriven")
}

// TestNewRefusesAPercentInPrefix: the ServeMux reads an escape in a
// pattern as the character it stands for, so a Prefix "/ops%20x" served
// "/ops x" and not the path it names, and one with a bare '%' gave links
// (next, dead_letters) that are no URL.
func TestNewRefusesAPercentInPrefix(t *testing.T) {
	for _, prefix := range []string{"/ops%20x", "/a%zz", "/a%", "/a%2Fb"} {
		_, err := kanbanhttp.New(kanbanhttp.Options{Prefix: prefix})
		assert.ErrorContains(t, err, "kanbanhttp: Options.Prefix", "%q", prefix)
	}
}

// TestHugeMethodIsNotEchoedWhole: a route error names the request's
// method, which the caller chose as it did the path (the server takes one
// of up to its header limit, a megabyte): it is clipped as the path is.
func TestHugeMethodIsNotEchoedWhole(t *testing.T) {
	_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"orders": deadQueue(t, 0, 1)})
	huge := strings.Repeat("X", 100<<10)
	for _, target := range []string{"/queues", "/nowhere"} {
		r := s.do(huge, target, "")
		assert.Contains(t, []int{http.StatusMethodNotAllowed, http.StatusNotFound}, r.status, "%s", target)
		assert.Less(t, len(r.raw), 1000, "%s: %.300s", target, r.raw)
	}
}

// A Prefix refused for a character a path pattern cannot hold is refused
// for that character, not for how it begins or ends, which are right.
func TestNewNamesWhatIsWrongWithAPrefix(t *testing.T) {
	for _, c := range []struct{ prefix, char string }{
		{"/o{p}s", `'{'`}, {"/ops x", `' '`}, {"/ops?x", `'?'`}, {"/ops#x", `'#'`}, {"/o}ps", `'}'`},
	} {
		_, err := kanbanhttp.New(kanbanhttp.Options{Prefix: c.prefix})
		require.Error(t, err, c.prefix)
		assert.Contains(t, err.Error(), "holds "+c.char, c.prefix)
		assert.NotContains(t, err.Error(), "must start with", c.prefix)
	}
	for _, prefix := range []string{"ops", "/ops/"} {
		_, err := kanbanhttp.New(kanbanhttp.Options{Prefix: prefix})
		assert.ErrorContains(t, err, "must start with / and not end with one", prefix)
	}
}

// GET /queues shows a queue whose backlog read panics as one whose
// backlog could not be read, the panic logged, and lists the others, as
// Refresh does: the panic ended the request, and the listing of every
// queue with it.
func TestListQueuesSurvivesABacklogThatPanics(t *testing.T) {
	var logged bytes.Buffer
	_, s := newServer(t, kanbanhttp.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}, nil)
	h := s.h.(*kanbanhttp.Handler)
	require.NoError(t, h.AddQueue("bad", panickyStore{deadQueue(t, 0, 1)}))
	require.NoError(t, h.AddQueue("good", deadQueue(t, 0, 2)))
	var r response
	require.NotPanics(t, func() { r = s.do("GET", "/queues", "") })
	require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	qs := r.body["queues"].([]any)
	require.Len(t, qs, 2)
	bad, good := qs[0].(map[string]any), qs[1].(map[string]any)
	assert.Equal(t, "the backlog could not be read; the service's log has the detail", bad["backlog_error"])
	assert.NotContains(t, bad, "backlog")
	assert.EqualValues(t, 2, good["backlog"].(map[string]any)["dead_letters"])
	assert.Contains(t, logged.String(), "backlog bug")
}

// panickingStore is a dead-letter store of a program's own whose every
// listing, redrive and delete panics.
type panickingStore struct{ *kanban.Memory[order] }

func (panickingStore) ListDeadLetters(context.Context, kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	panic("list bug")
}
func (panickingStore) RedriveDeadLetters(context.Context, kanban.DeadLetterFilter) (int, error) {
	panic("redrive bug")
}
func (panickingStore) DeleteDeadLetters(context.Context, kanban.DeadLetterFilter) (int, error) {
	panic("delete bug")
}

// A store that panics on a listing, a redrive or a delete is answered
// 500 in the JSON error shape, the panic logged with its stack and not
// shown: the panic ended the request, and the client read a connection
// cut off (or, through a recorder, a 200 with no body).
func TestStoreThatPanicsIsAnswered500(t *testing.T) {
	var logged bytes.Buffer
	_, s := newServer(t, kanbanhttp.Options{Token: token, Logger: slog.New(slog.NewTextHandler(&logged, nil))},
		map[string]kanban.DeadLetterStore{"orders": panickingStore{deadQueue(t, 0, 1)}})
	for _, c := range []struct{ method, target, body, bug string }{
		{"GET", "/queues/orders/deadletters", "", "list bug"},
		{"GET", "/queues/orders/deadletters?seq=1", "", "list bug"},
		{"POST", "/queues/orders/deadletters/redrive", `{"all":true}`, "redrive bug"},
		{"POST", "/queues/orders/deadletters/1/redrive", "", "redrive bug"},
		{"DELETE", "/queues/orders/deadletters?all=true", "", "delete bug"},
		{"DELETE", "/queues/orders/deadletters/1", "", "delete bug"},
	} {
		logged.Reset()
		var r response
		require.NotPanics(t, func() { r = s.do(c.method, c.target, c.body, bearer...) }, "%s %s", c.method, c.target)
		assert.Equal(t, http.StatusInternalServerError, r.status, "%s %s: %s", c.method, c.target, r.raw)
		assert.Equal(t, "internal_error", r.code(), "%s %s", c.method, c.target)
		assert.NotContains(t, string(r.raw), "bug", "%s %s", c.method, c.target)
		assert.Contains(t, logged.String(), c.bug, "%s %s", c.method, c.target)
		assert.Contains(t, logged.String(), "goroutine", "%s %s: the stack is logged", c.method, c.target)
	}
}

// A filter names each field once and as the API spells it: encoding/json
// keeps the last of two equal names, and takes a name in any case, so
// {"seq":1,"seq":0,"reason":"k-"} would redrive every dead letter whose
// reason holds "k-", not dead letter 1, as the query refuses a parameter
// given twice or misspelt.
func TestRedriveFilterNamesEachFieldOnceAsSpelt(t *testing.T) {
	for _, body := range []string{
		`{"seq":1,"seq":0,"reason":"k-"}`,
		`{"key":"k-1","key":"k-2"}`,
		`{"id":"o-1","Id":""}`,
		`{"ID":"o-1"}`,
		`{"Reason":"k-"}`,
		`{"all":false,"ALL":true}`,
	} {
		q := deadQueue(t, 0, 3)
		_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
		r := s.do("POST", "/queues/orders/deadletters/redrive", body, bearer...)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s: %s", body, r.raw)
		assert.Equal(t, "bad_request", r.code(), "%s", body)
		dl, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		assert.Len(t, dl, 3, "%s: nothing redriven", body)
	}
	// Each field once, as spelt, passes.
	q := deadQueue(t, 0, 3)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	r := s.do("POST", "/queues/orders/deadletters/redrive", `{"seq":1,"id":"o-1","key":"k-1","reason":"k-","older_than":"0s","all":false}`, bearer...)
	assert.Equal(t, http.StatusOK, r.status, "%s", r.raw)
	assert.EqualValues(t, 1, r.body["redriven"])
}

// The zero Handler, not made by New, takes no queue and answers every
// request 500 in the JSON error shape, rather than panic on a nil map or
// mux.
func TestZeroHandler(t *testing.T) {
	var h kanbanhttp.Handler
	var err error
	require.NotPanics(t, func() { err = h.AddQueue("orders", deadQueue(t, 0, 0)) })
	require.EqualError(t, err, "kanbanhttp: AddQueue: the Handler was not made by kanbanhttp.New")
	w := httptest.NewRecorder()
	require.NotPanics(t, func() { h.ServeHTTP(w, httptest.NewRequest("GET", "/queues", nil)) })
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.JSONEq(t, `{"error":{"code":"internal_error","message":"the Handler was not made by kanbanhttp.New"}}`, w.Body.String())
	require.NoError(t, h.Refresh(context.Background()), "no queue to read")
}

// TestFilterBodyErrorsSpeakJSON: a redrive's filter that is no JSON
// object, or gives a field a value of another type, is refused with a
// message in the terms of the request — the field as the body names it
// and the JSON it takes — and not in those of the decoder.
func TestFilterBodyErrorsSpeakJSON(t *testing.T) {
	q := deadQueue(t, 0, 2)
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	const object = "the body must be one JSON object, the filter"
	for _, tc := range []struct{ body, want string }{
		{"", object},
		{" \n", object},
		{"null", object},
		{"[]", object},
		{`[{"all":true}]`, object},
		{`"all"`, object},
		{"7", object},
		{"true", object},
		{`{"seq":"3"}`, "seq must be a positive whole number"},
		{`{"seq":-1}`, "seq must be a positive whole number"},
		{`{"seq":1.5}`, "seq must be a positive whole number"},
		{`{"seq":[1]}`, "seq must be a positive whole number"},
		{`{"all":"true"}`, "all must be true or false"},
		{`{"key":7}`, "key must be a string"},
		{`{"id":{"a":1}}`, "id must be a string"},
		{`{"older_than":3600}`, "older_than must be a string"},
		{`{"key":`, "the body ends before its JSON does"},
	} {
		r := httptest.NewRequest("POST", "/queues/orders/deadletters/redrive", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		s.h.ServeHTTP(w, r)
		var got struct {
			Error struct{ Code, Message string }
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got), "%q: %s", tc.body, w.Body)
		assert.Equal(t, http.StatusBadRequest, w.Code, "%q: %s", tc.body, w.Body)
		assert.Equal(t, "bad_request", got.Error.Code, "%q", tc.body)
		assert.Contains(t, got.Error.Message, tc.want, "%q", tc.body)
		for _, internal := range []string{"EOF", "Go ", "filterJSON", "uint64", "unmarshal", "json:"} {
			assert.NotContains(t, got.Error.Message, internal, "%q", tc.body)
		}
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "nothing redriven")
}

// A filter whose seq names a kept dead letter that its other fields do not
// match is answered with what the letter has, not as a letter gone: the
// operator sees that letter's fields on the board already.
func TestFilterNotMatchingItsSeq(t *testing.T) {
	q := deadQueue(t, 10, 2) // o-1 with key k-1, o-2 with key k-2
	_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/queues/orders/deadletters/redrive", `{"seq":1,"key":"k-2"}`},
		{"DELETE", "/queues/orders/deadletters?seq=1&key=k-2", ""},
	} {
		r := s.do(tc.method, tc.target, tc.body, bearer...)
		assert.Equal(t, http.StatusNotFound, r.status, "%s %s: %s", tc.method, tc.target, r.raw)
		assert.Equal(t, "dead_letter_not_matched", r.code(), "%s %s", tc.method, tc.target)
		msg, _ := r.body["error"].(map[string]any)["message"].(string)
		assert.Contains(t, msg, `dead letter 1: it does not match the filter: its key is "k-1", not "k-2"`, "%s %s", tc.method, tc.target)
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, 2, "nothing was done")
	r := s.do("POST", "/queues/orders/deadletters/redrive", `{"seq":7,"key":"k-2"}`, bearer...)
	assert.Equal(t, "dead_letter_not_found", r.code(), "a seq not kept: %s", r.raw)
}
