package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A key file given as -rules by mistake is text YAML reads as one
// string: the parse error quoted its first bytes ("cannot unmarshal !!str
// `3f9a2c7...`"), and the key reached the terminal and the logs. The
// command says the file is not a rule file, and quotes none of it.
func TestBacktestKeyFileAsRulesQuotesNoKey(t *testing.T) {
	f := newBacktestFixture(t)
	for name, key := range map[string]string{
		"hex":    "3f9a2c7b5e1d08f4a6c2e9b7d3f1a5c8e0b4d6f2a9c7e5b3d1f8a6c4e2b0d9f7\n",
		"base64": "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5\n",
		"list":   "- Zm9vYmFyYmF6cXV4cXV1eGNv\n",
		"number": "314159265358979323846264338327950288\n",
		"alias":  "*Zm9vYmFyYmF6cXV4cXV1eGNv\n",
	} {
		t.Run(name, func(t *testing.T) {
			keyFile := filepath.Join(f.dir, name+".key")
			require.NoError(t, os.WriteFile(keyFile, []byte(key), 0o600))
			code, stdout, stderr := runCLI("backtest", "-rules", keyFile, "-audit", f.trailA)
			assert.Equal(t, 2, code, "stdout: %s", stdout)
			assert.Contains(t, stderr, keyFile+": taicel: not a rule file")
			out := strings.ReplaceAll(stdout+stderr, keyFile, "")
			for i := 0; i+4 <= len(key)-1; i++ {
				assert.NotContains(t, out, key[i:i+4], "no 4 bytes of the key")
			}
		})
	}
}
