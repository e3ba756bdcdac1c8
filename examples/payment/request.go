package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/taipattern/taikit/examples/internal/httpapi"
)

// PaymentRequest is the body of POST /payment.
type PaymentRequest struct {
	Amount     jsonAmount `json:"amount"`
	CustomerID string     `json:"customer_id"`
	Currency   string     `json:"currency"`
	MerchantID string     `json:"merchant_id"`
	// Metadata maps keys to strings; a key whose value is null reads as
	// absent, as a null field does.
	Metadata map[string]*string `json:"metadata,omitempty"`
	// Location is optional fraud context: where the customer pays from.
	Location *Location `json:"location,omitempty"`
}

// jsonAmount keeps the amount's JSON number text as sent, so it can be
// checked exactly (decimal places) rather than through a float. A string,
// bool, object or array is a type error.
type jsonAmount string

// UnmarshalJSON accepts a JSON number or null (which reads as absent).
func (a *jsonAmount) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*a = ""
		return nil
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		*a = jsonAmount(b)
		return nil
	}
	kind := "value"
	switch b[0] {
	case '"':
		kind = "string"
	case 't', 'f':
		kind = "bool"
	case '{':
		kind = "object"
	case '[':
		kind = "array"
	}
	return invalid("amount", "amount must be a number, not a JSON %s", kind)
}

// Location is a client's position, for the impossible-travel rule, and
// country, for the country blacklist.
type Location struct {
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
	Country   string   `json:"country,omitempty"`
}

// Payment is a validated request: the payload of a payment signal.
type Payment struct {
	Amount     float64 // in major units, as sent
	Minor      int64   // in minor units of Currency: exact
	Currency   string
	CustomerID string
	MerchantID string
	Metadata   map[string]string
	Country    string // upper case, "" when not sent
	HasCoords  bool
	Lat, Lon   float64
}

// Limits on request fields. They bound memory and reject nonsense; the
// fraud policy judges what is left.
const (
	maxBody          = 1 << 20
	maxAmount        = 1e9 // major units; anything above is not a real payment
	maxIDLen         = 64
	maxMetadataKeys  = 50
	maxMetadataKey   = 40
	maxMetadataValue = 500
)

// requestError is every error answer: the examples' shared error schema,
// {"error": {"code", "message", "field", "details"}}.
type requestError = httpapi.Error

func invalid(field, format string, args ...any) *requestError {
	return httpapi.Invalid(field, format, args...)
}

// decodePayment reads and validates a POST /payment request.
func decodePayment(w http.ResponseWriter, r *http.Request) (Payment, error) {
	body, err := httpapi.ReadBody(w, r, maxBody)
	if err != nil {
		return Payment{}, err
	}
	return parsePayment(body)
}

// parsePayment decodes and validates a request body, strictly: a key sent
// twice, a key spelled in another case than the field's, an unknown key, a
// value of the wrong type or anything after the object is a 400 naming the
// key.
func parsePayment(body []byte) (Payment, error) {
	var req PaymentRequest
	if err := httpapi.Decode(body, &req); err != nil {
		return Payment{}, err
	}
	return req.validate()
}

func (req *PaymentRequest) validate() (Payment, error) {
	p := Payment{CustomerID: req.CustomerID, MerchantID: req.MerchantID}
	if err := checkID("customer_id", req.CustomerID); err != nil {
		return p, err
	}
	if err := checkID("merchant_id", req.MerchantID); err != nil {
		return p, err
	}
	if req.Currency == "" {
		return p, invalid("currency", "currency is required")
	}
	// Upper-cased only when it is three ASCII letters: strings.ToUpper
	// would also make "USD" of "uſd" (a long s) and "INR" of "ıNR".
	if len(req.Currency) == 3 && isAlpha(req.Currency) {
		p.Currency = strings.ToUpper(req.Currency)
	}
	digits, ok := minorUnits[p.Currency]
	if !ok {
		return p, invalid("currency", "currency %q is not an ISO 4217 currency code", clip(req.Currency))
	}
	if req.Amount == "" {
		return p, invalid("amount", "amount is required")
	}
	minor, amount, err := parseAmount(string(req.Amount), digits)
	if err != nil {
		return p, invalid("amount", "amount %s: %v", clip(string(req.Amount)), err)
	}
	p.Minor, p.Amount = minor, amount
	// A key whose value is null is absent, and is not one of the keys
	// allowed (its name is checked below all the same, as a null field's
	// is).
	keys := 0
	for _, v := range req.Metadata {
		if v != nil {
			keys++
		}
	}
	if keys > maxMetadataKeys {
		return p, invalid("metadata", "metadata has %d keys; at most %d are allowed", keys, maxMetadataKeys)
	}
	// In the keys' order: a request with several entries out of bounds is
	// refused naming the same one each time it is sent.
	for _, k := range slices.Sorted(maps.Keys(req.Metadata)) {
		value := req.Metadata[k]
		if k == "" || len(k) > maxMetadataKey {
			return p, invalid("metadata", "metadata key %q must be 1 to %d bytes", clip(k), maxMetadataKey)
		}
		// Kept with the payment and answered back: no control characters
		// (NUL, escapes, line breaks), which a log or terminal that shows
		// them later would act on or cut at.
		if hasControl(k) {
			return p, invalid("metadata", "metadata key %q holds a control character", clip(k))
		}
		if value == nil {
			continue // null: absent
		}
		v := *value
		if len(v) > maxMetadataValue {
			return p, invalid("metadata", "metadata value of %q is longer than %d bytes", clip(k), maxMetadataValue)
		}
		if hasControl(v) {
			return p, invalid("metadata", "metadata value of %q holds a control character", clip(k))
		}
		if p.Metadata == nil {
			p.Metadata = make(map[string]string, keys)
		}
		p.Metadata[k] = v
	}
	if loc := req.Location; loc != nil {
		if loc.Country != "" {
			if len(loc.Country) != 2 || !isAlpha(loc.Country) {
				return p, invalid("location.country", "location.country %q is not an ISO 3166 alpha-2 code", clip(loc.Country))
			}
			p.Country = strings.ToUpper(loc.Country)
		}
		switch {
		case (loc.Latitude == nil) != (loc.Longitude == nil):
			return p, invalid("location", "location needs both latitude and longitude, or neither")
		case loc.Latitude != nil:
			lat, lon := *loc.Latitude, *loc.Longitude
			if !(lat >= -90 && lat <= 90) {
				return p, invalid("location.latitude", "location.latitude %v is outside [-90, 90]", lat)
			}
			if !(lon >= -180 && lon <= 180) {
				return p, invalid("location.longitude", "location.longitude %v is outside [-180, 180]", lon)
			}
			// -0 is 0: one place, and one request to an idempotency key.
			if lat == 0 {
				lat = 0
			}
			if lon == 0 {
				lon = 0
			}
			p.HasCoords, p.Lat, p.Lon = true, lat, lon
		}
	}
	return p, nil
}

// checkID accepts an ID that is also a valid NATS subject token sequence
// and key-value key (the customer state keys on it): letters, digits, '_',
// '-' and '.', where a '.' separates two non-empty parts.
func checkID(field, v string) error {
	if v == "" {
		return invalid(field, "%s is required", field)
	}
	if len(v) > maxIDLen {
		return invalid(field, "%s is longer than %d bytes", field, maxIDLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return invalid(field, "%s %q may hold only letters, digits, '_', '-' and '.'", field, clip(v))
		}
	}
	if v[0] == '.' || v[len(v)-1] == '.' || strings.Contains(v, "..") {
		return invalid(field, "%s %q may not begin or end with '.' nor hold \"..\"", field, clip(v))
	}
	return nil
}

// hasControl reports whether s holds a control character: C0, DEL or C1.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// parseAmount parses a JSON number exactly: the amount in minor units of a
// currency with the given number of decimal places, and as a float. Any
// spelling of a value is accepted (10, 10.00, 1e1, 1000e-2,
// 0.00000000000000000000000000001e31): what counts is the value's own
// decimal places.
func parseAmount(s string, digits int) (int64, float64, error) {
	if strings.HasPrefix(s, "-") {
		return 0, 0, errors.New("must be greater than zero")
	}
	mant, expText := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, expText = s[:i], s[i+1:]
	}
	// The value is the digit string d × 10^exp, d without leading or
	// trailing zeros.
	intPart, frac, _ := strings.Cut(mant, ".")
	d := strings.TrimLeft(intPart+frac, "0")
	exp := -len(frac)
	for len(d) > 0 && d[len(d)-1] == '0' {
		d = d[:len(d)-1]
		exp++
	}
	if d == "" {
		return 0, 0, errors.New("must be greater than zero")
	}
	tooLarge := fmt.Errorf("is larger than %g", float64(maxAmount))
	tooPrecise := fmt.Errorf("has more than %d decimal places", digits)
	if expText != "" {
		// The body holds at most maxBody digits, so an exponent beyond
		// twice that (or beyond an int) puts the value far above any
		// amount, or far below a minor unit; within it, exp cannot
		// overflow.
		e, err := strconv.Atoi(expText)
		switch {
		case (err != nil || e > 2*maxBody) && !strings.HasPrefix(expText, "-"):
			return 0, 0, tooLarge
		case err != nil || e < -2*maxBody:
			return 0, 0, tooPrecise
		}
		exp += e
	}
	if -exp > digits {
		return 0, 0, tooPrecise
	}
	shift := digits + exp // ≥ 0: the places d moves left in minor units
	if len(d)+shift > 18 {
		return 0, 0, tooLarge
	}
	minor, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return 0, 0, errors.New("is not a number")
	}
	for range shift {
		minor *= 10
	}
	amount := float64(minor) / math.Pow10(digits)
	if amount > maxAmount {
		return 0, 0, tooLarge
	}
	return minor, amount, nil
}

// extraBytes is about how many bytes p's record and its confirmation each
// hold beyond a payment without metadata: its metadata as JSON, which
// writes some characters (<, >, &, U+2028, U+2029) six bytes each. The
// storage gate takes a payment at them on top of a store's usual payment,
// so that a large one charged has room for its record.
func (p *Payment) extraBytes() int64 {
	if len(p.Metadata) == 0 {
		return 0
	}
	b, _ := json.Marshal(p.Metadata) // a map of strings always encodes
	return int64(len(b))
}

// clip shortens a value quoted in an error message.
func clip(s string) string { return httpapi.Clip(s, 40) }

// fingerprint identifies what a request asks for, from its parsed fields,
// so that the same payment sent with other spacing, key order or number
// spelling (10, 10.0, 1e1) is the same request to an idempotency key.
func (p *Payment) fingerprint() string {
	h := sha256.New()
	field := func(s string) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(p.CustomerID)
	field(p.MerchantID)
	field(p.Currency)
	field(strconv.FormatInt(p.Minor, 10))
	field(p.Country)
	if p.HasCoords {
		field(strconv.FormatFloat(p.Lat, 'g', -1, 64) + "," + strconv.FormatFloat(p.Lon, 'g', -1, 64))
	} else {
		field("")
	}
	keys := make([]string, 0, len(p.Metadata))
	for k := range p.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	field(strconv.Itoa(len(keys)))
	for _, k := range keys {
		field(k)
		field(p.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
