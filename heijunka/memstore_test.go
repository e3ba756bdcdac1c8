package heijunka_test

import (
	"testing"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
