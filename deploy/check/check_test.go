package check

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot(".")
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	assert.Equal(t, "github.com/taipattern/taikit", modulePath(b))
	again, err := RepoRoot(filepath.Join(root, "examples", "payment"))
	require.NoError(t, err)
	assert.Equal(t, root, again, "from a directory of another module below it")

	// Outside the repository there is none.
	_, err = RepoRoot(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds the go.mod of github.com/taipattern/taikit")
}

func TestInside(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/r", true}, {"/r/a/b", true}, {"/r/..a", true},
		{"/", false}, {"/rr", false}, {"/r/../s", false},
	} {
		assert.Equal(t, tc.want, inside("/r", filepath.Clean(tc.path)), tc.path)
	}
}

func TestModulePath(t *testing.T) {
	assert.Equal(t, "example.com/m", modulePath([]byte("// c\nmodule \"example.com/m\"\n\ngo 1.26\n")))
	assert.Empty(t, modulePath([]byte("go 1.26\n")))
}
