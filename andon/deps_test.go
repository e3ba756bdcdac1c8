package andon_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDependencies keeps andon on the standard library and taikit's own
// packages, and the browser driver out of its tests (it lives in
// andon/browsertest).
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	list := func(args ...string) []string {
		out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
		require.NoError(t, err, "go list %v", args)
		return strings.Fields(string(out))
	}
	for _, p := range list("-f", `{{join .Imports " "}}`, ".") {
		first, _, _ := strings.Cut(p, "/")
		if strings.Contains(first, ".") {
			assert.True(t, strings.HasPrefix(p, "github.com/taipattern/taikit/"), "andon imports %s", p)
		}
	}
	for _, p := range list("-deps", "-test", ".") {
		assert.NotContains(t, p, "chromedp", "the tests of andon link %s", p)
	}
}
