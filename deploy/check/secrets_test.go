package check

import (
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
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

// TestMakeDeploySecretsKeepsTheDirectoryPrivate runs make deploy-secrets
// into a new directory and into one that exists already open to every
// user (deploy/secrets as a checkout creates it, 0755, holding files an
// earlier run wrote): either way the directory ends 0700, so no other
// local user reaches the tokens, while the files keep the mode the
// containers' user needs, and the files there are kept.
func TestMakeDeploySecretsKeepsTheDirectoryPrivate(t *testing.T) {
	mk := tool(t, "make", "make")
	fresh := filepath.Join(t.TempDir(), "new", "secrets")
	old := filepath.Join(t.TempDir(), "secrets")
	require.NoError(t, os.Mkdir(old, 0o755))
	require.NoError(t, os.Chmod(old, 0o755))
	token := strings.Repeat("ab", 32)
	require.NoError(t, os.WriteFile(filepath.Join(old, "payment_api_token"), []byte(token), 0o644))
	for _, dir := range []string{fresh, old} {
		out, ok := runTool(t, repoRoot(t), nil, mk, "-s", "deploy-secrets", "DEPLOY_SECRETS="+dir)
		require.True(t, ok, out)
		st, err := os.Stat(dir)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "%s: the directory of the tokens is its owner's alone", dir)
		for _, f := range madeSecrets {
			st, err := os.Stat(filepath.Join(dir, path.Base(f)))
			if assert.NoError(t, err) {
				assert.Equal(t, os.FileMode(0o644), st.Mode().Perm(), "%s: Compose mounts it as it is", f)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(old, "payment_api_token"))
	require.NoError(t, err)
	assert.Equal(t, token, string(b), "the token an earlier run wrote is kept")
}

// TestSecretPlaceholdersAreRefused runs each service with the values of
// deploy/k8s/secrets.yaml as its tokens and audit key: applied unchanged
// (kubectl apply -f deploy/k8s/ applies it with the rest), the
// placeholders, published in this repository, must not become the
// service's tokens, so the service refuses to start on them. With values
// of its own in their place it starts (-print-rules runs after the
// settings are checked, and exits).
func TestSecretPlaceholdersAreRefused(t *testing.T) {
	n := 0
	for _, m := range manifests(t) {
		s, ok := m.Object.(*corev1.Secret)
		if !ok {
			continue
		}
		service, ok := strings.CutSuffix(s.Name, "-tokens")
		require.True(t, ok, "Secret %s", s.Name)
		n++
		values := map[string]string{}
		for k, v := range s.Data {
			values[k] = string(v)
		}
		maps.Copy(values, s.StringData)
		bin := buildService(t, service)
		run := func(values map[string]string) (string, error) {
			dir := t.TempDir()
			env := []string{"ADDR=127.0.0.1:0", "DATA_DIR=" + t.TempDir(), "LOG_LEVEL=warn"}
			for key, variable := range map[string]string{"api-token": "API_TOKEN_FILE", "admin-token": "ADMIN_TOKEN_FILE", "audit-key": "AUDIT_KEY_FILE"} {
				v, ok := values[key]
				require.True(t, ok, "Secret %s has no key %s", s.Name, key)
				f := filepath.Join(dir, key)
				require.NoError(t, os.WriteFile(f, []byte(v), 0o600))
				env = append(env, variable+"="+f)
			}
			cmd := exec.Command(bin, "-print-rules")
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := run(values)
		assert.Error(t, err, "%s starts with the placeholders of Secret %s as its tokens:\n%s", service, s.Name, tail(out, 5))
		out, err = run(map[string]string{"api-token": "api-" + strings.Repeat("a", 32), "admin-token": "admin-" + strings.Repeat("b", 32), "audit-key": strings.Repeat("k", 32)})
		assert.NoError(t, err, "%s with tokens of its own:\n%s", service, tail(out, 5))
	}
	assert.Equal(t, 2, n, "a Secret for each service")
}
