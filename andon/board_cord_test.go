package andon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// TestBoardCordRefusedOnceTheEvaluatorIsShutDown pulls and resets the
// cord from a board whose evaluator was shut down while the board is
// still served: the evaluator leaves the cord as it was, and the board
// says so with an error, where it answered 200 with the unchanged state
// (the page cleared the reason typed and showed no error, as if the pull
// had been taken).
func TestBoardCordRefusedOnceTheEvaluatorIsShutDown(t *testing.T) {
	post := func(f *boardFixture, body string) *http.Response {
		resp := cordPost(t, f, body)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("pull", func(t *testing.T) {
		f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
		require.NoError(t, f.ev.Shutdown(context.Background()))
		resp := post(f, `{"action":"pull","reason":"jam","who":"alice"}`)
		assertErrorBody(t, resp, http.StatusServiceUnavailable, "shutting_down")
		assert.False(t, f.ev.Cord().Pulled)
		assert.False(t, f.line.Status().Stopped)
	})
	t.Run("reset", func(t *testing.T) {
		f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
		require.Equal(t, http.StatusOK, post(f, `{"action":"pull","reason":"jam"}`).StatusCode)
		require.NoError(t, f.ev.Shutdown(context.Background()))
		resp := post(f, `{"action":"reset"}`)
		assertErrorBody(t, resp, http.StatusServiceUnavailable, "shutting_down")
		assert.True(t, f.ev.Cord().Pulled, "the cord stays pulled")
	})
	t.Run("already pulled is no error", func(t *testing.T) {
		f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
		require.Equal(t, http.StatusOK, post(f, `{"action":"pull","reason":"jam"}`).StatusCode)
		assert.Equal(t, http.StatusOK, post(f, `{"action":"pull","reason":"again"}`).StatusCode)
		require.Equal(t, http.StatusOK, post(f, `{"action":"reset"}`).StatusCode)
		assert.Equal(t, http.StatusOK, post(f, `{"action":"reset"}`).StatusCode)
	})
}

// TestBoardCordWhoNameIsChecked: the name BoardOptions.Who gives is held
// to the rules of a name typed on the page: at most 200 characters,
// without control characters, bidi overrides or line separators; a pull
// or reset it names otherwise is refused with invalid_request, and the
// cord is left as it was. A Who that reads a header the client sets
// (X-User) put any text into the cord's status, the alert's detail, the
// logs and the hooks.
func TestBoardCordWhoNameIsChecked(t *testing.T) {
	for _, name := range []string{
		strings.Repeat("x", 201),
		"carol\x1b[31m",
		"pay\u202eton",
		"one\u2028two",
		"a\xffb",
	} {
		f := newBoardFixture(t, andon.BoardOptions{AllowCord: true, Who: func(*http.Request) string { return name }})
		for _, c := range []struct {
			body   string
			pulled bool
		}{{`{"action":"pull","reason":"jam"}`, false}, {`{"action":"reset"}`, true}} {
			if c.pulled {
				require.True(t, f.ev.Pull(context.Background(), "smoke", "alice"))
			}
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Andon-Board", "1")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			assertErrorBody(t, resp, http.StatusBadRequest, "invalid_request")
			resp.Body.Close()
			assert.Equal(t, c.pulled, f.ev.Cord().Pulled, "%q: %s changed nothing", name, c.body)
		}
	}
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true, Who: func(*http.Request) string { return strings.Repeat("山", 200) }})
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(`{"action":"pull","reason":"jam"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Andon-Board", "1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "200 characters is the limit")
	assert.Equal(t, strings.Repeat("山", 200), f.ev.Cord().Who)
}

// TestBoardCordFieldTypesNamed: a field of the wrong JSON type is refused
// naming the field in the request's words. encoding/json's message named
// the board's own Go type ("Go struct field cordRequest.who of type
// string").
func TestBoardCordFieldTypesNamed(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	for body, want := range map[string]string{
		`{"action":"pull","who":{"name":"x"}}`: `bad cord request: field "who" must be a string, not an object`,
		`{"action":["pull"]}`:                  `bad cord request: field "action" must be a string, not an array`,
		`{"action":"pull","reason":7}`:         `bad cord request: field "reason" must be a string, not a number`,
		`{"action":"pull","reason":true}`:      `bad cord request: field "reason" must be a string, not true or false`,
	} {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Andon-Board", "1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e struct {
			Error struct{ Code, Message string }
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Equal(t, want, e.Error.Message, body)
		assert.False(t, f.ev.Cord().Pulled, body)
	}
	// null is no value, as encoding/json takes it.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(`{"action":"pull","who":null}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Andon-Board", "1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// cordPost posts body to the board's cord as its page does and returns
// the response, its body for the caller to close.
func cordPost(t *testing.T, f *boardFixture, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Andon-Board", "1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return resp
}

// postCord posts body to the board's cord as its page does and returns
// the status and the error's message ("" for an answer that is not an
// error).
func postCord(t *testing.T, f *boardFixture, body string) (int, string) {
	t.Helper()
	resp := cordPost(t, f, body)
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	if resp.StatusCode != http.StatusOK {
		assert.Equal(t, "invalid_request", e.Error.Code, "%q", body)
	}
	return resp.StatusCode, e.Error.Message
}

// TestBoardCordTextIsTakenAsSent: a reason or who that is not valid
// UTF-8 (a byte 0xff), or holds half of a surrogate pair (an escape
// \ud800 with no low half), is refused with invalid_request, as a name
// from Who that is not valid UTF-8 is. encoding/json put U+FFFD in their
// place, and the cord was pulled with a reason other than the one sent.
// A pair of surrogates, and U+FFFD itself, are text and taken.
func TestBoardCordTextIsTakenAsSent(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	for _, body := range []string{
		"{\"action\":\"pull\",\"reason\":\"a\xffb\"}",
		"{\"action\":\"pull\",\"who\":\"al\xc3ice\"}",
		`{"action":"pull","reason":"a\ud800b"}`,
		`{"action":"pull","reason":"a\uDC00"}`,
		`{"action":"pull","who":"\ud83d"}`,
		`{"action":"pull","reason":"\ud83d\u0041"}`,
	} {
		code, msg := postCord(t, f, body)
		assert.Equal(t, http.StatusBadRequest, code, "%q", body)
		assert.NotEmpty(t, msg, "%q", body)
		assert.False(t, f.ev.Cord().Pulled, "%q", body)
	}
	for body, reason := range map[string]string{
		`{"action":"pull","reason":"jam \ud83d\ude00"}`:   "jam 😀",
		`{"action":"pull","reason":"jam \ufffd"}`:         "jam \ufffd",
		`{"action":"pull","reason":"jam \\ud800"}`:        `jam \ud800`,
		"{\"action\":\"pull\",\"reason\":\"jam \uFFFD\"}": "jam \ufffd",
	} {
		code, msg := postCord(t, f, body)
		require.Equal(t, http.StatusOK, code, "%q: %s", body, msg)
		assert.Equal(t, reason, f.ev.Cord().Reason, "%q", body)
		require.True(t, f.ev.Reset(context.Background()))
	}
}

// TestBoardCordBodyMustBeAnObject: a body that is empty or one JSON value
// other than an object is refused with invalid_request saying that the
// body must be one JSON object. The message read "EOF", or named the
// board's own Go type ("cannot unmarshal array into Go value of type
// andon.cordRequest"); null was taken for an object with no action.
func TestBoardCordBodyMustBeAnObject(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	for _, body := range []string{``, ` `, `[]`, `["pull"]`, `"pull"`, `7`, `true`, `null`} {
		code, msg := postCord(t, f, body)
		assert.Equal(t, http.StatusBadRequest, code, "%q", body)
		assert.Contains(t, msg, "one JSON object", "%q", body)
		assert.NotContains(t, msg, "cordRequest", "%q", body)
		assert.NotContains(t, msg, "Go ", "%q", body)
	}
	assert.False(t, f.ev.Cord().Pulled)
}
