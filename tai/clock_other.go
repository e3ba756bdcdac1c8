//go:build !(linux && amd64)

package tai

import "time"

// monotonic returns the time since epoch, on the monotonic clock.
func monotonic() time.Duration { return time.Since(epoch) }
