package kaizen

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrAuditTampered matches (errors.Is) every *AuditError.
var ErrAuditTampered = errors.New("kaizen: audit trail does not verify")

// AuditError names the first line of an audit trail that does not verify.
type AuditError struct {
	Line   int    // 1-based
	Reason string // what is wrong with it
}

// Error returns "kaizen: audit line N: " and the reason.
func (e *AuditError) Error() string {
	return "kaizen: audit line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// Is reports whether target is ErrAuditTampered.
func (e *AuditError) Is(target error) bool { return target == ErrAuditTampered }

// VerifyAudit reads an audit trail that starts at GenesisHash and checks
// every line: that it is a well-formed audit line, that its hash matches
// its content (so it was not edited), and that its prev is the hash of the
// line before it (so no line was deleted, inserted or moved). It returns a
// *AuditError naming the first line that fails, or an I/O error from r.
//
// A chain cannot tell that lines were cut from its end: keep the hash of
// the last line (VerifyAuditFrom returns it) somewhere the trail's writer
// cannot change, and compare.
func VerifyAudit(r io.Reader) error {
	_, err := VerifyAuditFrom(r, GenesisHash)
	return err
}

// VerifyAuditFrom is VerifyAudit for a trail whose first line continues
// from genesis (AuditOptions.Genesis). It returns the hash of the last
// line, or genesis for an empty trail: the genesis of the next file.
func VerifyAuditFrom(r io.Reader, genesis string) (last string, err error) {
	var prev [sha256.Size]byte
	if err := decodeHash(genesis, &prev); err != nil {
		return "", fmt.Errorf("kaizen: VerifyAuditFrom: genesis %q: %w", genesis, err)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, rerr := br.ReadBytes('\n')
		if rerr != nil && rerr != io.EOF {
			return "", fmt.Errorf("kaizen: reading audit trail: %w", rerr)
		}
		if len(line) == 0 && rerr == io.EOF {
			return hex.EncodeToString(prev[:]), nil
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if err := verifyLine(line, &prev, n); err != nil {
			return "", err
		}
		if rerr == io.EOF {
			return hex.EncodeToString(prev[:]), nil
		}
	}
}

const (
	hashSuffixLen = len(`,"hash":"`) + 2*sha256.Size + len(`"}`)
	prevSuffixLen = len(`,"prev":"`) + 2*sha256.Size + len(`"`)
)

// verifyLine checks line n against the hash of the line before it and,
// when it verifies, replaces prev with its hash.
func verifyLine(line []byte, prev *[sha256.Size]byte, n int) error {
	malformed := &AuditError{Line: n, Reason: "not an audit line (malformed or truncated)"}
	if len(line) < hashSuffixLen+prevSuffixLen+2 || !json.Valid(line) {
		return malformed
	}
	cut := len(line) - hashSuffixLen
	suffix := line[cut:]
	if !bytes.HasPrefix(suffix, []byte(`,"hash":"`)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return malformed
	}
	var stated [sha256.Size]byte
	if _, err := hex.Decode(stated[:], suffix[len(`,"hash":"`):len(`,"hash":"`)+2*sha256.Size]); err != nil {
		return malformed
	}
	body := line[:cut]
	ps := body[len(body)-prevSuffixLen:]
	if !bytes.HasPrefix(ps, []byte(`,"prev":"`)) || ps[len(ps)-1] != '"' {
		return malformed
	}
	var linked [sha256.Size]byte
	if _, err := hex.Decode(linked[:], ps[len(`,"prev":"`):len(ps)-1]); err != nil {
		return malformed
	}
	h := sha256.New()
	h.Write(body)
	h.Write([]byte{'}'})
	var actual [sha256.Size]byte
	h.Sum(actual[:0])
	if actual != stated {
		return &AuditError{Line: n, Reason: "edited: its hash does not match its content"}
	}
	if linked != *prev {
		if n == 1 {
			return &AuditError{Line: n, Reason: "its prev hash is not the genesis hash: the trail does not start here"}
		}
		return &AuditError{Line: n, Reason: "its prev hash is not the hash of line " + strconv.Itoa(n-1) +
			": a line was deleted, inserted or moved before it, or line " + strconv.Itoa(n-1) + " was edited and rehashed"}
	}
	*prev = actual
	return nil
}
