package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// howtoFraudRule is the rule docs/howto.md adds to rules/fraud.yaml in
// "Change the payment service: add a fraud rule": its first yaml block,
// out of the list item it is indented in.
func howtoFraudRule(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "howto.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n## Change the payment service: add a fraud rule\n")
	require.True(t, ok, "docs/howto.md has no section on adding a fraud rule")
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok, "the section shows no yaml block")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok, "the section's yaml block is not closed")
	var rule strings.Builder
	for _, line := range strings.SplitAfter(block, "\n") {
		// The block sits in a numbered list item, three spaces in.
		rule.WriteString(strings.TrimPrefix(line, "   "))
	}
	return strings.TrimRight(rule.String(), " ")
}

// The how-to's card testing rule, put in the built-in rule file where the
// how-to says (before daily_amount), compiles, and its reason writes the
// amount and the limit as the shipped rules write amounts: with the
// payment's currency's own minor digits. Once the file has the rule (the
// how-to's change made), the file's rule is held to the same.
func TestHowtoCardTestingRuleWritesTheCurrencysDigits(t *testing.T) {
	rule := howtoFraudRule(t)
	file := defaultFraudRules
	if !bytes.Contains(file, []byte("- name: card_testing\n")) {
		const before = "  - name: daily_amount\n"
		require.Equal(t, 1, bytes.Count(file, []byte(before)))
		file = bytes.Replace(file, []byte(before), []byte(rule+"\n"+before), 1)
	}

	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	env, err := NewFraudEnv(FraudConfig{}, NewMemoryState(0), func() time.Time { return now })
	require.NoError(t, err)
	pol, err := compileFraudRules(env, file)
	require.NoError(t, err, "the how-to's rule in rules/fraud.yaml:\n%s", rule)

	for i, tc := range []struct {
		amount, currency string
		reason           string // of card_testing; "" when it does not fire
	}{
		{"0.50", "USD", "amount 0.50 under 1.00, as when a stolen card is tested"},
		{"0.01", "EUR", "amount 0.01 under 1.00, as when a stolen card is tested"},
		{"0.5", "BHD", "amount 0.500 under 1.000, as when a stolen card is tested"},
		{"0.999", "KWD", "amount 0.999 under 1.000, as when a stolen card is tested"},
		{"1", "USD", ""},
		{"1", "JPY", ""}, // the least yen amount there is
		{"1.000", "BHD", ""},
	} {
		p, err := parsePayment([]byte(`{"amount": ` + tc.amount + `, "customer_id": "c` + strconv.Itoa(i) +
			`", "currency": "` + tc.currency + `", "merchant_id": "m"}`))
		require.NoError(t, err)
		d, err := pol.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: p.CustomerID, Time: now, Payload: p})
		require.NoError(t, err)
		reason := ""
		for _, c := range d.Contributions {
			if c.Rule == "card_testing" {
				reason = c.Reason
			}
		}
		assert.Equal(t, tc.reason, reason, "%s %s", tc.amount, tc.currency)
	}
}
