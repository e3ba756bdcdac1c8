package storetest_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/storetest"
)

// A store's own tests run the suite with Run, which needs the test's
// *testing.T:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) heijunka.Store {
//			s, err := mystore.New(...) // a fresh, empty store
//			require.NoError(t, err)
//			return s
//		})
//	}
//
// TestStore runs the same suite anywhere else, and returns what it found:
// here the in-memory store passes every case.
func Example() {
	err := storetest.TestStore(func() (heijunka.Store, error) {
		return heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	})
	fmt.Println("memory store:", err)
	// Output:
	// memory store: <nil>
}

// forgetfulStore is a store whose Reset forgets nothing, as one that
// deletes the key under a prefix other than the one Take writes would.
type forgetfulStore struct{ heijunka.Store }

func (forgetfulStore) Reset(context.Context, string) error { return nil }

// A store that breaks the contract fails the cases that show it. The
// error's first line names them; the lines after it say what each found.
func ExampleTestStore() {
	err := storetest.TestStore(func() (heijunka.Store, error) {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
		return forgetfulStore{s}, err
	})
	summary, _, _ := strings.Cut(err.Error(), "\n")
	fmt.Println(summary)
	// Output:
	// storetest: 1 of 15 cases failed: Reset
}
