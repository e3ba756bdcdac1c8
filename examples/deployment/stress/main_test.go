package main

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

// TestHelpHidesTheToken: -h lists -token without the API token taken from
// API_TOKEN as its default.
func TestHelpHidesTheToken(t *testing.T) {
	const secret = "sekrit-token-4711"
	t.Setenv("API_TOKEN", secret)
	var out bytes.Buffer
	err := run([]string{"-h"}, &out)
	if err != flag.ErrHelp {
		t.Fatalf("run -h: %v", err)
	}
	if !strings.Contains(out.String(), "-token") {
		t.Fatalf("-h does not list -token:\n%s", out.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("-h prints the API token:\n%s", out.String())
	}
}
