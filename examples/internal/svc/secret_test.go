package svc_test

import (
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// secretForms are the ways fmt may print secret, a string or bytes: as
// it is, in hex (%x of a struct prints each field in hex), and as the
// list of its bytes (%v of a []byte).
func secretForms(secret string) []string {
	return []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret))),
		strings.Trim(fmt.Sprint([]byte(secret)), "[]")}
}

// A Serving printed with any verb, or logged, shows neither token nor the
// audit key: a configuration is printed whole when a start is debugged,
// and logs are read by more people than the tokens are meant for.
func TestServingPrintedHidesItsSecrets(t *testing.T) {
	const api, admin = "api-s3cret-0123456789", "admin-s3cret-0123456789"
	key := "audit-key-s3cret-0123456789"
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte(key), 0o600))
	s, err := parse(t, map[string]string{"API_TOKEN": api, "ADMIN_TOKEN": admin}, "-audit-key-file", keyFile, "-allowed-hosts", "pay.example")
	require.NoError(t, err)
	require.Equal(t, key, string(s.AuditKey.Reveal()))

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("serving", "s", s, "p", &s)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("serving", "s", s, "p", &s)
	printed := map[string]string{"logs": logs.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		printed[verb] = fmt.Sprintf(verb, s)
		printed[verb+" of a pointer"] = fmt.Sprintf(verb, &s)
		printed[verb+" of a field"] = fmt.Sprintf(verb, struct{ S svc.Serving }{s})
	}
	printed["Sprint"] = fmt.Sprint(s)
	// A service's configuration embeds a Serving: it prints whole, its
	// own fields too, the secrets redacted.
	type config struct {
		svc.Serving
		NATSURL svc.URL
	}
	const natsURL = "nats://svc:pw-s3cret-42@nats.example:4222"
	printed["embedded"] = fmt.Sprintf("%+v", config{s, svc.NewURL(natsURL)})
	printed["embedded, JSON"] = func() string {
		b, err := json.Marshal(config{s, svc.NewURL(natsURL)})
		require.NoError(t, err)
		return string(b)
	}()
	printed["embedded, logged"] = func() string {
		var b bytes.Buffer
		slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "c", config{s, svc.NewURL(natsURL)}, "url", svc.NewURL(natsURL))
		slog.New(slog.NewTextHandler(&b, nil)).Info("config", "c", config{s, svc.NewURL(natsURL)}, "url", svc.NewURL(natsURL))
		return b.String()
	}()
	printed["Sprintln"] = fmt.Sprintln(&s)
	for how, out := range printed {
		for _, secret := range []string{api, admin, key, "pw-s3cret-42"} {
			for _, form := range secretForms(secret) {
				assert.NotContains(t, out, form, how)
			}
		}
	}
	assert.Contains(t, printed["embedded"], "NATSURL:nats://svc:xxxxx@nats.example:4222", "an embedding struct's own fields are shown, a URL's password redacted")
	assert.Contains(t, printed["embedded, JSON"], `"APIToken":"REDACTED"`)
	for _, how := range []string{"%v", "%+v", "%#v", "%s", "logs", "embedded"} {
		assert.Contains(t, printed[how], "pay.example", "%s: the other fields are shown", how)
		assert.Contains(t, printed[how], ":3009", "%s: the other fields are shown", how)
		assert.Contains(t, printed[how], "REDACTED", "%s: a secret set is seen to be set", how)
	}
	assert.Contains(t, printed["%+v"], "{Addr::3009 APIToken:REDACTED AdminToken:REDACTED AuditKey:REDACTED AllowedHosts:[pay.example]")
	assert.Contains(t, printed["%#v"], `svc.Serving{Addr:":3009", APIToken:"REDACTED"`)

	var unset svc.Serving
	assert.NotContains(t, fmt.Sprintf("%+v", unset), "REDACTED", "no secret set, none is shown as hidden")
}

// rawVerbs are formats fmt prints without calling a value's Format: %p
// of a value that is not a pointer, and a verb a struct does not take,
// print it as it is kept. Held in a variable, as vet would refuse them.
var rawVerbs = []string{"%p", "%!", "%z"}

// A secret printed where fmt does not call its methods — %p, a bad verb,
// a field not exported (a configuration held by a service in one), a
// field of a struct held in one — shows an address, not the value; held
// in an interface, any verb and encoding redacts it; and none can be a
// map key, which encoding/json writes as it is.
func TestSecretsPrintedRawShowNoValue(t *testing.T) {
	const api, key, pw = "api-s3cret-0123456789", "key-s3cret-0123456789", "pw-s3cret-42"
	tok, kb, u := svc.NewSecret(api), svc.NewSecretBytes([]byte(key)), svc.NewURL("nats://svc:"+pw+"@nats.example:4222")
	s := svc.Serving{Addr: ":1", APIToken: tok, AdminToken: tok, AuditKey: kb}
	type config struct {
		svc.Serving
		NATSURL svc.URL
	}
	type service struct {
		cfg config
		tok svc.Secret
		key svc.SecretBytes
		url svc.URL
	}
	values := map[string]any{"Secret": tok, "SecretBytes": kb, "URL": u, "Serving": s,
		"unexported": service{config{s, u}, tok, kb, u}, "pointer to unexported": &service{config{s, u}, tok, kb, u},
		"anonymous": struct {
			s svc.Secret
			k svc.SecretBytes
			u svc.URL
		}{tok, kb, u}}
	printed := map[string]string{}
	for name, v := range values {
		for _, verb := range append([]string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"}, rawVerbs...) {
			printed[name+" "+verb] = fmt.Sprintf(verb, v)
		}
		var logs bytes.Buffer
		slog.New(slog.NewTextHandler(&logs, nil)).Info("v", "v", v)
		slog.New(slog.NewJSONHandler(&logs, nil)).Info("v", "v", v)
		printed[name+" logged"] = logs.String()
		b, _ := json.Marshal(v)
		printed[name+" JSON"] = string(b)
		b, _ = xml.Marshal(struct {
			XMLName xml.Name `xml:"v"`
			V       any
		}{V: v})
		printed[name+" XML"] = string(b)
		var g bytes.Buffer
		_ = gob.NewEncoder(&g).Encode(v)
		printed[name+" gob"] = g.String()
	}
	for how, out := range printed {
		for _, secret := range []string{api, key, pw} {
			for _, form := range secretForms(secret) {
				assert.NotContains(t, out, form, how)
			}
		}
	}
	assert.Equal(t, "REDACTED", printed["Secret %x"])
	assert.Equal(t, `"REDACTED"`, printed["SecretBytes %q"])
	assert.Equal(t, "nats://svc:xxxxx@nats.example:4222", printed["URL %x"])
	for _, typ := range []reflect.Type{reflect.TypeFor[svc.Secret](), reflect.TypeFor[svc.SecretBytes](), reflect.TypeFor[svc.URL]()} {
		assert.False(t, typ.Comparable(), "%s cannot be a map key", typ)
	}

	assert.Equal(t, api, tok.Reveal())
	assert.Equal(t, key, string(kb.Reveal()))
	assert.Equal(t, "nats://svc:"+pw+"@nats.example:4222", u.Reveal())
	for _, unset := range []interface{ IsSet() bool }{svc.Secret{}, svc.NewSecret(""), svc.SecretBytes{}, svc.NewSecretBytes(nil), svc.URL{}, svc.NewURL("")} {
		assert.False(t, unset.IsSet(), "%T", unset)
		assert.Empty(t, fmt.Sprint(unset), "%T", unset)
	}
}
