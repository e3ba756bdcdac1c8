package httpapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tokens printed with any verb, or logged, show neither token, and show
// that each is set.
func TestTokensPrintedHideTheTokens(t *testing.T) {
	const api, admin = "api-s3cret-0123456789", "admin-s3cret-0123456789"
	tok := Tokens{API: api, Admin: admin, Realm: "payment admin"}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("tokens", "t", tok, "p", &tok)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("tokens", "t", tok, "p", &tok)
	printed := map[string]string{"logs": logs.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		printed[verb] = fmt.Sprintf(verb, tok)
		printed[verb+" of a pointer"] = fmt.Sprintf(verb, &tok)
		printed[verb+" of a field"] = fmt.Sprintf(verb, struct{ T Tokens }{tok})
	}
	for how, out := range printed {
		for _, secret := range []string{api, admin} {
			for _, form := range []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret))),
				strings.Trim(fmt.Sprint([]byte(secret)), "[]")} {
				assert.NotContains(t, out, form, how)
			}
		}
	}
	for _, how := range []string{"%v", "%+v", "%#v", "%s", "logs"} {
		assert.Contains(t, printed[how], "payment admin", how)
		assert.Contains(t, printed[how], "REDACTED", how)
	}
	assert.Equal(t, "{API:REDACTED Admin:REDACTED Realm:payment admin}", printed["%+v"])
	assert.Equal(t, `httpapi.Tokens{API:"REDACTED", Admin:"REDACTED", Realm:"payment admin"}`, printed["%#v"])
	assert.Equal(t, "{API: Admin: Realm:}", fmt.Sprintf("%+v", Tokens{}), "a token not set is not shown as hidden")
}

// Tokens marshalled to JSON, on their own or in a value holding them,
// show neither token, and show that each is set.
func TestTokensMarshalledHideTheTokens(t *testing.T) {
	const api, admin = "api-s3cret-0123456789", "admin-s3cret-0123456789"
	tok := Tokens{API: api, Admin: admin, Realm: "payment admin"}
	for name, v := range map[string]any{"value": tok, "pointer": &tok, "field": struct{ T Tokens }{tok}, "slice": []Tokens{tok}} {
		b, err := json.Marshal(v)
		require.NoError(t, err, name)
		for _, secret := range []string{api, admin} {
			assert.NotContains(t, string(b), secret, name)
		}
		assert.Contains(t, string(b), `{"API":"REDACTED","Admin":"REDACTED","Realm":"payment admin"}`, name)
	}
	b, err := json.Marshal(Tokens{Realm: "r"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"API":"","Admin":"","Realm":"r"}`, string(b), "a token not set is not shown as hidden")
}

// Tokens encoded as XML, on their own or in a value holding them, show
// neither token, and show that each is set. encoding/xml encoded the
// exported fields as they were.
func TestTokensXMLHidesTheTokens(t *testing.T) {
	const api, admin = "api-s3cret-0123456789", "admin-s3cret-0123456789"
	tok := Tokens{API: api, Admin: admin, Realm: "payment admin"}
	type holder struct {
		T Tokens `xml:"tokens"`
	}
	for name, c := range map[string]struct {
		v    any
		want string
	}{
		"value":   {tok, `<Tokens><API>REDACTED</API><Admin>REDACTED</Admin><Realm>payment admin</Realm></Tokens>`},
		"pointer": {&tok, `<Tokens><API>REDACTED</API><Admin>REDACTED</Admin><Realm>payment admin</Realm></Tokens>`},
		"field":   {holder{tok}, `<holder><tokens><API>REDACTED</API><Admin>REDACTED</Admin><Realm>payment admin</Realm></tokens></holder>`},
		"slice":   {[]Tokens{tok}, `<Tokens><API>REDACTED</API><Admin>REDACTED</Admin><Realm>payment admin</Realm></Tokens>`},
		"not set": {Tokens{Realm: "r"}, `<Tokens><API></API><Admin></Admin><Realm>r</Realm></Tokens>`},
	} {
		b, err := xml.Marshal(c.v)
		require.NoError(t, err, name)
		for _, secret := range []string{api, admin} {
			assert.NotContains(t, string(b), secret, name)
		}
		assert.Equal(t, c.want, string(b), name)
	}
}
