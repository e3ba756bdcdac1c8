package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePaymentValid(t *testing.T) {
	p, err := parsePayment([]byte(`{"amount": 99.99, "customer_id": "cust_123", "currency": "usd", "merchant_id": "merc_456",
		"metadata": {"order": "A-1"}, "location": {"latitude": 52.52, "longitude": 13.40, "country": "de"}}`))
	require.NoError(t, err)
	assert.Equal(t, int64(9999), p.Minor)
	assert.Equal(t, 99.99, p.Amount)
	assert.Equal(t, "USD", p.Currency)
	assert.Equal(t, "DE", p.Country)
	assert.True(t, p.HasCoords)
	assert.Equal(t, map[string]string{"order": "A-1"}, p.Metadata)

	for body, minor := range map[string]int64{
		`{"amount": 1e2, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`:        10000,
		`{"amount": 5000, "customer_id": "c", "currency": "JPY", "merchant_id": "m"}`:       5000,
		`{"amount": 1.250, "customer_id": "c", "currency": "KWD", "merchant_id": "m"}`:      1250,
		`{"amount": 0.01, "customer_id": "c", "currency": "EUR", "merchant_id": "m"}`:       1,
		`{"amount": 12.5000, "customer_id": "c", "currency": "EUR", "merchant_id": "m"}`:    1250,
		`{"amount": 1.5E-1, "customer_id": "c", "currency": "EUR", "merchant_id": "m"}`:     15,
		`{"amount": 1000000000, "customer_id": "c", "currency": "EUR", "merchant_id": "m"}`: 100000000000,
		`{"amount": 1000e-4, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`:    10,
		`{"amount": 0.10, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`:       10,
		`{"amount": 1.50E1, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`:     1500,
		`{"amount": 0.0001e4, "customer_id": "c", "currency": "JPY", "merchant_id": "m"}`:   1,
		`{"amount": 120e-1, "customer_id": "c", "currency": "JPY", "merchant_id": "m"}`:     12,
		`{"amount": 1, "customer_id": "a.b-c_D", "currency": "USD", "merchant_id": "m.1"}`:  100,
		// Any spelling of a value: the exponent only shifts the digits.
		`{"amount": 0.0000000000000000000000000000000001e34, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`: 100,
		`{"amount": 100000000000000000000000000000000e-32, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`:   100,
		// The Caribbean guilder, ISO 4217 since 2025, in place of the
		// Netherlands Antillean guilder.
		`{"amount": 2.50, "customer_id": "c", "currency": "XCG", "merchant_id": "m"}`: 250,
	} {
		p, err := parsePayment([]byte(body))
		require.NoError(t, err, body)
		assert.Equal(t, minor, p.Minor, body)
	}
}

func TestParsePaymentInvalid(t *testing.T) {
	const base = `"customer_id": "cust_1", "currency": "USD", "merchant_id": "m_1"`
	tests := []struct {
		name, body, field, msg string
	}{
		{"malformed", `{"amount": 1,`, "", "malformed JSON"},
		{"not an object", `[1, 2]`, "", "the request body must be an object"},
		{"null", `null`, "", "the request body must be an object, not null"},
		{"null with space", " null\n", "", "the request body must be an object, not null"},
		{"string", `"x"`, "", "the request body must be an object"},
		{"number", `7`, "", "the request body must be an object"},
		{"bool", `true`, "", "the request body must be an object"},
		{"empty", ``, "", "request body is empty"},
		{"two values", `{"amount": 1, ` + base + `} {}`, "", "more than one JSON value"},
		{"amount string", `{"amount": "99.99", ` + base + `}`, "amount", "amount must be a number, not a JSON string"},
		{"amount bool", `{"amount": true, ` + base + `}`, "amount", "not a JSON bool"},
		{"amount missing", `{` + base + `}`, "amount", "amount is required"},
		{"amount null", `{"amount": null, ` + base + `}`, "amount", "amount is required"},
		{"amount zero", `{"amount": 0, ` + base + `}`, "amount", "greater than zero"},
		{"amount negative", `{"amount": -5, ` + base + `}`, "amount", "greater than zero"},
		{"amount decimals", `{"amount": 1.001, ` + base + `}`, "amount", "more than 2 decimal places"},
		{"amount decimals exponent", `{"amount": 1e-3, ` + base + `}`, "amount", "more than 2 decimal places"},
		{"yen decimals", `{"amount": 1.5, "customer_id": "c", "currency": "JPY", "merchant_id": "m"}`, "amount", "more than 0 decimal places"},
		{"amount huge", `{"amount": 1e300, ` + base + `}`, "amount", "is larger than 1e+09"},
		{"amount exponent past an int", `{"amount": 1e99999999999999999999, ` + base + `}`, "amount", "is larger than 1e+09"},
		{"amount tiny", `{"amount": 1e-300, ` + base + `}`, "amount", "more than 2 decimal places"},
		{"amount negative exponent past an int", `{"amount": 1e-99999999999999999999, ` + base + `}`, "amount", "more than 2 decimal places"},
		{"amount zero, huge exponent", `{"amount": 0e99999999999999999999, ` + base + `}`, "amount", "greater than zero"},
		{"amount large", `{"amount": 1000000001, ` + base + `}`, "amount", "larger than 1e+09"},
		{"amount long", `{"amount": 123456789012345678901234567890, ` + base + `}`, "amount", "larger than"},
		{"customer type", `{"amount": 1, "customer_id": 5, "currency": "USD", "merchant_id": "m"}`, "customer_id", "customer_id must be a string, not a JSON number"},
		{"customer missing", `{"amount": 1, "currency": "USD", "merchant_id": "m"}`, "customer_id", "customer_id is required"},
		{"customer chars", `{"amount": 1, "customer_id": "a b", "currency": "USD", "merchant_id": "m"}`, "customer_id", "may hold only"},
		{"customer long", `{"amount": 1, "customer_id": "` + strings.Repeat("c", 65) + `", "currency": "USD", "merchant_id": "m"}`, "customer_id", "longer than 64"},
		{"merchant missing", `{"amount": 1, "customer_id": "c", "currency": "USD"}`, "merchant_id", "merchant_id is required"},
		{"currency missing", `{"amount": 1, "customer_id": "c", "merchant_id": "m"}`, "currency", "currency is required"},
		{"currency unknown", `{"amount": 1, "customer_id": "c", "currency": "XYZ", "merchant_id": "m"}`, "currency", `"XYZ" is not an ISO 4217`},
		{"currency long s", `{"amount": 1, "customer_id": "c", "currency": "uſd", "merchant_id": "m"}`, "currency", `"uſd" is not an ISO 4217`},
		{"currency dotless i", `{"amount": 1, "customer_id": "c", "currency": "ıNR", "merchant_id": "m"}`, "currency", `"ıNR" is not an ISO 4217`},
		{"currency type", `{"amount": 1, "customer_id": "c", "currency": 840, "merchant_id": "m"}`, "currency", "currency must be a string"},
		{"unknown field", `{"amount": 1, "card_number": "4242", ` + base + `}`, "card_number", `unknown field "card_number"`},
		{"metadata type", `{"amount": 1, "metadata": [1], ` + base + `}`, "metadata", "metadata must be an object"},
		{"metadata value type", `{"amount": 1, "metadata": {"a": 1}, ` + base + `}`, "metadata.a", "metadata.a must be a string, not a JSON number"},
		{"metadata value object", `{"amount": 1, "metadata": {"a": {}}, ` + base + `}`, "metadata.a", "metadata.a must be a string, not a JSON object"},
		{"metadata value array", `{"amount": 1, "metadata": {"a": ["v"]}, ` + base + `}`, "metadata.a", "metadata.a must be a string, not a JSON array"},
		{"metadata key long", `{"amount": 1, "metadata": {"` + strings.Repeat("k", 41) + `": "v"}, ` + base + `}`, "metadata", "metadata key"},
		{"metadata key NUL", `{"amount": 1, "metadata": {"a\u0000": "v"}, ` + base + `}`, "metadata", `metadata key "a\x00" holds a control character`},
		{"metadata value NUL", `{"amount": 1, "metadata": {"a": "v\u0000"}, ` + base + `}`, "metadata", `metadata value of "a" holds a control character`},
		{"metadata value escape", `{"amount": 1, "metadata": {"a": "\u001b[31m"}, ` + base + `}`, "metadata", `metadata value of "a" holds a control character`},
		{"metadata value C1", `{"amount": 1, "metadata": {"a": "v\u0085"}, ` + base + `}`, "metadata", `metadata value of "a" holds a control character`},
		{"metadata value DEL", `{"amount": 1, "metadata": {"a": "v\u007f"}, ` + base + `}`, "metadata", `metadata value of "a" holds a control character`},
		{"latitude only", `{"amount": 1, "location": {"latitude": 1}, ` + base + `}`, "location", "both latitude and longitude"},
		{"latitude range", `{"amount": 1, "location": {"latitude": 91, "longitude": 0}, ` + base + `}`, "location.latitude", "outside [-90, 90]"},
		{"longitude range", `{"amount": 1, "location": {"latitude": 0, "longitude": -181}, ` + base + `}`, "location.longitude", "outside [-180, 180]"},
		{"country", `{"amount": 1, "location": {"country": "USA"}, ` + base + `}`, "location.country", "not an ISO 3166"},
		{"amount twice", `{"amount": 1, "amount": 7, ` + base + `}`, "amount", `key "amount" appears twice`},
		{"amount mis-cased", `{"amount": 1, "Amount": 7, ` + base + `}`, "Amount", `key "Amount" must be spelled "amount"`},
		{"customer mis-cased", `{"amount": 1, "Customer_ID": "c", "currency": "USD", "merchant_id": "m"}`, "Customer_ID", `must be spelled "customer_id"`},
		{"nested twice", `{"amount": 1, "location": {"country": "DE", "country": "FR"}, ` + base + `}`, "location.country", "appears twice"},
		{"amount tiny exponent", `{"amount": 1001e-5, ` + base + `}`, "amount", "more than 2 decimal places"},
		{"customer trailing dot", `{"amount": 1, "customer_id": "a.", "currency": "USD", "merchant_id": "m"}`, "customer_id", "may not begin or end with '.'"},
		{"customer leading dot", `{"amount": 1, "customer_id": ".a", "currency": "USD", "merchant_id": "m"}`, "customer_id", "may not begin or end with '.'"},
		{"customer double dot", `{"amount": 1, "customer_id": "a..b", "currency": "USD", "merchant_id": "m"}`, "customer_id", `nor hold ".."`},
		{"merchant double dot", `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m..x"}`, "merchant_id", `nor hold ".."`},
		{"customer wildcard", `{"amount": 1, "customer_id": "a.*", "currency": "USD", "merchant_id": "m"}`, "customer_id", "may hold only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePayment([]byte(tt.body))
			var re *requestError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, http.StatusBadRequest, re.Status)
			assert.Equal(t, tt.field, re.Field)
			assert.Contains(t, re.Message, tt.msg)
		})
	}
}

func TestParsePaymentQuotesWholeCharacters(t *testing.T) {
	// A long value is shortened between characters before a message
	// quotes it: cut within one, the message named a byte the client never
	// sent ("\xc3").
	body := `{"amount": 1, "customer_id": "c", "currency": "a` + strings.Repeat("é", 30) + `", "merchant_id": "m"}`
	_, err := parsePayment([]byte(body))
	var re *requestError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, `currency "a`+strings.Repeat("é", 19)+`…" is not an ISO 4217 currency code`, re.Message)
}

func FuzzParsePayment(f *testing.F) {
	f.Add([]byte(`{"amount": 99.99, "customer_id": "cust_123", "currency": "USD", "merchant_id": "merc_456"}`))
	f.Add([]byte(`{"amount": 1e-2, "customer_id": "c", "currency": "jpy", "merchant_id": "m", "metadata": {"a": "b"}}`))
	f.Add([]byte(`{"amount": 5, "customer_id": "c", "currency": "KWD", "merchant_id": "m", "location": {"latitude": 1, "longitude": 2, "country": "de"}}`))
	f.Add([]byte(`{"amount": "1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parsePayment(body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) || re.Status < 400 || re.Status >= 500 || re.Message == "" {
				t.Fatalf("error %v is not a 4xx request error", err)
			}
			return
		}
		if p.Minor <= 0 || !(p.Amount > 0) || p.Amount > maxAmount {
			t.Fatalf("accepted amount %v (%d minor)", p.Amount, p.Minor)
		}
		if _, ok := minorUnits[p.Currency]; !ok {
			t.Fatalf("accepted currency %q", p.Currency)
		}
		if checkID("customer_id", p.CustomerID) != nil || checkID("merchant_id", p.MerchantID) != nil {
			t.Fatalf("accepted ids %q %q", p.CustomerID, p.MerchantID)
		}
	})
}

// TestFingerprintReadsMinusZeroAsZero: -0 and 0 are one latitude and one
// longitude, however they are spelled, so an Idempotency-Key sent again
// with either is the same request, not a 422.
func TestFingerprintReadsMinusZeroAsZero(t *testing.T) {
	const base = `"amount": 10, "customer_id": "c", "currency": "USD", "merchant_id": "m"`
	want, err := parsePayment([]byte(`{` + base + `, "location": {"latitude": 0, "longitude": 0}}`))
	require.NoError(t, err)
	for _, loc := range []string{
		`{"latitude": -0, "longitude": 0}`,
		`{"latitude": 0, "longitude": -0.0}`,
		`{"latitude": -0e3, "longitude": -0.000}`,
	} {
		p, err := parsePayment([]byte(`{` + base + `, "location": ` + loc + `}`))
		require.NoError(t, err, loc)
		assert.Equal(t, want.fingerprint(), p.fingerprint(), loc)
	}
}

// A request with several metadata entries out of bounds is refused naming
// the same one each time it is sent (the first by key), not whichever a
// map's order gives first: a client fixing its request one answer at a
// time sees one answer.
func TestMetadataRefusalIsStable(t *testing.T) {
	const body = `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {` +
		`"e key": "v\u0000", "b key": "v\u0000", "a key": "v\u0000", "d key": "v\u0000", "c key": "v\u0000"}}`
	for range 50 {
		_, err := parsePayment([]byte(body))
		require.Error(t, err)
		require.Contains(t, err.Error(), `"a key"`)
	}
}

// A metadata key whose value is null reads as absent, so it is not one of
// the 50 keys a payment may hold: 50 values and a null are accepted, and
// are the same request as the 50 values alone. 51 values are refused.
func TestMetadataNullValuesAreNotCountedAsKeys(t *testing.T) {
	body := func(values, nulls int) string {
		var meta []string
		for i := range values {
			meta = append(meta, fmt.Sprintf(`"k%02d": "v"`, i))
		}
		for i := range nulls {
			meta = append(meta, fmt.Sprintf(`"n%02d": null`, i))
		}
		return `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {` + strings.Join(meta, ", ") + `}}`
	}
	want, err := parsePayment([]byte(body(maxMetadataKeys, 0)))
	require.NoError(t, err)
	p, err := parsePayment([]byte(body(maxMetadataKeys, 3)))
	require.NoError(t, err, "null values read as absent")
	assert.Len(t, p.Metadata, maxMetadataKeys)
	assert.Equal(t, want.fingerprint(), p.fingerprint())

	_, err = parsePayment([]byte(body(maxMetadataKeys+1, 0)))
	var re *requestError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "metadata", re.Field)
	assert.Contains(t, re.Message, "metadata has 51 keys; at most 50 are allowed")
}

// A body that is not one JSON object is refused: null too, which would
// otherwise read as an object without fields (a payment missing its
// customer_id).
func TestPaymentBodyThatIsNoObjectIsRefused(t *testing.T) {
	ts := startService(t, testConfig(t))
	for _, path := range []string{"/payment"} {
		for _, body := range []string{`null`, ` null `, `[]`, `"x"`, `7`, `true`} {
			r := ts.do(t, http.MethodPost, path, body)
			require.Equal(t, http.StatusBadRequest, r.Code, "%s %s: %s", path, body, r.Raw)
			assert.Equal(t, "invalid_request", r.errField("code"), "%s %s: %s", path, body, r.Raw)
			assert.Empty(t, r.errField("field"), "%s %s: %s", path, body, r.Raw)
			assert.Contains(t, r.errField("message"), "the request body must be an object", "%s %s: %s", path, body, r.Raw)
		}
	}
}
