package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAbortDuringValidationOfARefusedRegion: an abort sent while the
// prerequisites of a region they then refuse are being judged (here the
// health of the version serving, read from a slow Prometheus, for a
// version not in the catalog) ends the region ROLLED_BACK with the
// abort's reason, as for a region they let through. The abort was
// answered 202 and then ignored: the deployment ended FAILED.
func TestAbortDuringValidationOfARefusedRegion(t *testing.T) {
	const admin = "admin-token-0123456789"
	validating, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		if strings.Contains(q, `version="v1.0.0"`) {
			once.Do(func() { close(validating) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		v := "0.01"
		if strings.HasPrefix(q, "sum(increase(") {
			v = "100"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,%q]}]}}`, time.Now().Unix(), v)
	}))
	defer prom.Close()
	releaseAll := sync.OnceFunc(func() { close(release) })
	defer releaseAll()
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0",
		"-admin-token", admin, "-prometheus-url", prom.URL)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v9.9.9", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-validating
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { return ts.aborted(id) }, 10*time.Second, time.Millisecond, "the abort never reached the rollout's process")
	releaseAll()

	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Equal(t, StatusRolledBack, d.Results[0].Status)
}
