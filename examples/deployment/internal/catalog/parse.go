package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Parse reads a catalog in its JSON form and validates it (see Validate).
// It reads strictly: an unknown field, a field given twice, a value of the
// wrong type or anything after the catalog's object is an error naming
// where it was found. A UTF-8 byte order mark at the very start, which
// some editors write, is skipped, as RFC 8259 allows. A byte that is not
// UTF-8 is an error naming its line and offset: encoding/json would read
// it as U+FFFD, and a name in the file would not be the name in the
// catalog.
func Parse(r io.Reader) (*Catalog, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	b = bytes.TrimPrefix(b, []byte(byteOrderMark))
	if err := checkUTF8(b); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	rd := reader{dec: dec}
	c, err := rd.catalog()
	if err == nil {
		err = rd.end()
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

const byteOrderMark = "\ufeff"

// Load parses the catalog in the file at path.
func Load(path string) (*Catalog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// UnmarshalJSON reads c from its JSON form as Parse does, validation
// included.
func (c *Catalog) UnmarshalJSON(b []byte) error {
	parsed, err := Parse(bytes.NewReader(b))
	if err != nil {
		return err
	}
	*c = *parsed
	return nil
}

// UnmarshalJSON reads p from its JSON form, an object with all four of
// error_rate, p99_ms, cpu and memory. It checks types, and that p99_ms is
// in [0, 1h], a time.Duration can hold it; the shares' ranges are
// Validate's.
func (p *Profile) UnmarshalJSON(b []byte) error {
	return unmarshal(b, func(rd *reader) (err error) {
		*p, err = rd.profile("profile")
		return err
	})
}

// UnmarshalJSON reads v from its JSON form, the object a catalog holds for
// a version. It checks types, and the ranges of p99_ms ([0, 1h]) and
// degrade_after_secs ([0, 30 days]), so a time.Duration can hold them;
// the other ranges are Validate's.
func (v *Version) UnmarshalJSON(b []byte) error {
	return unmarshal(b, func(rd *reader) (err error) {
		*v, err = rd.version("version")
		return err
	})
}

func unmarshal(b []byte, read func(*reader) error) error {
	if err := checkUTF8(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	rd := &reader{dec: dec}
	err := read(rd)
	if err == nil {
		err = rd.end()
	}
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Limits of what a catalog may say. They keep sums and conversions far
// from overflowing.
const (
	maxCount        = 1_000_000 // instances, capacity
	maxP99          = time.Hour // a profile's p99
	maxDegradeAfter = 30 * 24 * time.Hour
)

// reader reads a catalog from a JSON token stream. Reading token by token,
// rather than decoding into structs, lets it name the path of every error
// and refuse a field that appears twice.
type reader struct {
	dec *json.Decoder
}

func (rd *reader) catalog() (*Catalog, error) {
	c := &Catalog{}
	seen, err := rd.object("", func(key, path string) (err error) {
		switch key {
		case "services":
			c.Services = map[string]Service{}
			_, err = rd.object(path, func(name, path string) error {
				s, err := rd.service(path)
				c.Services[name] = s
				return err
			})
		case "regions":
			c.Regions = map[string]Region{}
			_, err = rd.object(path, func(name, path string) error {
				r, err := rd.region(path)
				c.Regions[name] = r
				return err
			})
		default:
			err = unknown(path, "services, regions")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, required("", seen, "services", "regions")
}

func (rd *reader) service(path string) (Service, error) {
	var s Service
	seen, err := rd.object(path, func(key, path string) (err error) {
		switch key {
		case "description":
			s.Description, err = rd.string(path)
		case "instances":
			s.Instances, err = rd.count(path)
		case "versions":
			s.Versions = map[string]Version{}
			_, err = rd.object(path, func(name, path string) error {
				v, err := rd.version(path)
				s.Versions[name] = v
				return err
			})
		case "running":
			s.Running = map[string]string{}
			_, err = rd.object(path, func(region, path string) error {
				v, err := rd.string(path)
				s.Running[region] = v
				return err
			})
			if len(s.Running) == 0 {
				s.Running = nil // an empty object says nothing; keep the zero value
			}
		default:
			err = unknown(path, "description, instances, versions, running")
		}
		return err
	})
	if err != nil {
		return s, err
	}
	return s, required(path, seen, "versions")
}

func (rd *reader) region(path string) (Region, error) {
	var r Region
	seen, err := rd.object(path, func(key, path string) (err error) {
		switch key {
		case "capacity":
			r.Capacity, err = rd.count(path)
		default:
			err = unknown(path, "capacity")
		}
		return err
	})
	if err != nil {
		return r, err
	}
	return r, required(path, seen, "capacity")
}

var profileFields = []string{"error_rate", "p99_ms", "cpu", "memory"}

func (rd *reader) version(path string) (Version, error) {
	var v Version
	seen, err := rd.object(path, func(key, path string) (err error) {
		if ok, err := rd.profileField(&v.Profile, key, path); ok {
			return err
		}
		switch key {
		case "description":
			v.Description, err = rd.string(path)
		case "regions":
			v.Regions = map[string]Profile{}
			_, err = rd.object(path, func(region, path string) error {
				p, err := rd.profile(path)
				v.Regions[region] = p
				return err
			})
			if len(v.Regions) == 0 {
				v.Regions = nil
			}
		case "degrade_after_secs":
			v.DegradeAfter, err = rd.duration(path, time.Second, maxDegradeAfter)
		case "degraded":
			var p Profile
			p, err = rd.profile(path)
			v.Degraded = &p
		default:
			err = unknown(path, "error_rate, p99_ms, cpu, memory, description, regions, degrade_after_secs, degraded")
		}
		return err
	})
	if err != nil {
		return v, err
	}
	return v, required(path, seen, profileFields...)
}

func (rd *reader) profile(path string) (Profile, error) {
	var p Profile
	seen, err := rd.object(path, func(key, path string) error {
		if ok, err := rd.profileField(&p, key, path); ok {
			return err
		}
		return unknown(path, "error_rate, p99_ms, cpu, memory")
	})
	if err != nil {
		return p, err
	}
	return p, required(path, seen, profileFields...)
}

// profileField reads key into p if key is one of a profile's fields; ok
// says whether it was.
func (rd *reader) profileField(p *Profile, key, path string) (ok bool, err error) {
	switch key {
	case "error_rate":
		p.ErrorRate, err = rd.number(path)
	case "p99_ms":
		p.P99, err = rd.duration(path, time.Millisecond, maxP99)
	case "cpu":
		p.CPU, err = rd.number(path)
	case "memory":
		p.Memory, err = rd.number(path)
	default:
		return false, nil
	}
	return true, err
}

// object reads an object at path, calling field for each of its keys with
// the key's own path to read the value. A key given twice is an error. It
// returns the keys it saw.
func (rd *reader) object(path string, field func(key, path string) error) (map[string]bool, error) {
	tok, err := rd.token(path)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%s: want an object, got %s", where(path), describe(tok))
	}
	seen := map[string]bool{}
	for rd.dec.More() {
		tok, err := rd.token(path)
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string) // inside an object the decoder gives only string keys
		keyPath := join(path, key)
		if seen[key] {
			return nil, fmt.Errorf("%s: given twice", keyPath)
		}
		seen[key] = true
		if err := field(key, keyPath); err != nil {
			return nil, err
		}
	}
	if _, err := rd.token(path); err != nil { // the closing brace
		return nil, err
	}
	return seen, nil
}

func (rd *reader) string(path string) (string, error) {
	tok, err := rd.token(path)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("%s: want a string, got %s", path, describe(tok))
	}
	return s, nil
}

func (rd *reader) number(path string) (float64, error) {
	tok, err := rd.token(path)
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: want a number, got %s", path, describe(tok))
	}
	f, err := n.Float64()
	if err != nil {
		return 0, fmt.Errorf("%s: number %s is out of range", path, n)
	}
	return f, nil
}

// count reads a whole number in [0, maxCount].
func (rd *reader) count(path string) (int, error) {
	f, err := rd.number(path)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("%s: must be a whole number, got %v", path, f)
	}
	if f < 0 || f > maxCount {
		return 0, fmt.Errorf("%s: must be in [0,%d], got %v", path, maxCount, f)
	}
	return int(f), nil
}

// duration reads a number of units in [0, max].
func (rd *reader) duration(path string, unit, max time.Duration) (time.Duration, error) {
	f, err := rd.number(path)
	if err != nil {
		return 0, err
	}
	limit := float64(max) / float64(unit)
	if !(f >= 0 && f <= limit) {
		return 0, fmt.Errorf("%s: must be in [0,%v], got %v", path, limit, f)
	}
	return time.Duration(math.Round(f * float64(unit))), nil
}

func (rd *reader) token(path string) (json.Token, error) {
	tok, err := rd.dec.Token()
	switch {
	case err == io.EOF && path == "":
		return nil, errors.New("empty input, want a JSON object")
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%s: unexpected end of input", where(path))
	case err != nil:
		return nil, fmt.Errorf("%s: %w", where(path), err)
	}
	return tok, nil
}

// end makes sure nothing follows the catalog.
func (rd *reader) end() error {
	if _, err := rd.dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the end of the object")
	}
	return nil
}

// checkUTF8 returns a *utf8Error for the first byte of b that is not part
// of UTF-8 text, naming its line; nil when b is UTF-8.
func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	line := 1
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return &utf8Error{line: line, offset: int64(i), b: b[i]}
		}
		if r == '\n' {
			line++
		}
		i += size
	}
	return nil
}

// utf8Error is a byte in a catalog that is not UTF-8.
type utf8Error struct {
	line   int
	offset int64
	b      byte
}

func (e *utf8Error) Error() string {
	return fmt.Sprintf("line %d: byte %#x at offset %d is not UTF-8", e.line, e.b, e.offset)
}

func unknown(path, want string) error {
	return fmt.Errorf("%s: unknown field (want one of %s)", path, want)
}

func required(path string, seen map[string]bool, fields ...string) error {
	var missing []string
	for _, f := range fields {
		if !seen[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing %s", where(path), strings.Join(missing, ", "))
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where names path in a message; the empty path is the whole catalog.
func where(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return fmt.Sprintf("the string %q", t)
	case json.Number:
		return "the number " + t.String()
	case bool:
		return fmt.Sprint(t)
	default:
		return "null"
	}
}
