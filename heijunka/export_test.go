package heijunka

import (
	"context"
	"time"
)

// SetSleep replaces how l waits in Wait, so tests can advance a fake clock
// instead of sleeping.
func SetSleep(l *Limiter, sleep func(ctx context.Context, d time.Duration) error) { l.sleep = sleep }
