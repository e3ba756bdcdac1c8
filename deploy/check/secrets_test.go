package check

import (
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMakeDeploySecrets runs the Makefile's deploy-secrets into a temporary
// directory: it writes every file the Compose stack's secrets name, each a
// token the services accept (the API and admin tokens differ, an audit key
// holds at least 16 bytes), readable by the containers' user, and a second
// run keeps them.
func TestMakeDeploySecrets(t *testing.T) {
	mk := tool(t, "make", "make")
	dir := filepath.Join(t.TempDir(), "secrets")
	out, ok := runTool(t, repoRoot(t), nil, mk, "-s", "deploy-secrets", "DEPLOY_SECRETS="+dir)
	require.True(t, ok, out)
	seen := map[string]string{}
	for _, f := range madeSecrets {
		name := path.Base(f)
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "make deploy-secrets writes %s", name)
		assert.GreaterOrEqual(t, len(b), 32, name)
		assert.NotContains(t, string(b), "\n", "%s: a token without white space", name)
		if other, dup := seen[string(b)]; dup {
			t.Errorf("%s and %s hold the same value", name, other)
		}
		seen[string(b)] = name
		st, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "%s: Compose mounts it as it is, and the containers' user (65532) must read it", name)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, len(madeSecrets), "nothing else is left behind")

	before, err := os.ReadFile(filepath.Join(dir, "payment_api_token"))
	require.NoError(t, err)
	out, ok = runTool(t, repoRoot(t), nil, mk, "-s", "deploy-secrets", "DEPLOY_SECRETS="+dir)
	require.True(t, ok, out)
	after, err := os.ReadFile(filepath.Join(dir, "payment_api_token"))
	require.NoError(t, err)
	assert.Equal(t, before, after, "a second run keeps the tokens")
	assert.Contains(t, out, "kept")
}
