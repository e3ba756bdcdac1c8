package tai

import "context"

// An Action does the work a signal asks for — charge a card, roll out a
// version — once the policies have allowed it. It returns the caller's
// result type R.
type Action[T, R any] interface {
	Execute(ctx context.Context, s Signal[T]) (R, error)
}

// ActionFunc adapts an ordinary function to an Action.
type ActionFunc[T, R any] func(ctx context.Context, s Signal[T]) (R, error)

// Execute calls f(ctx, s).
func (f ActionFunc[T, R]) Execute(ctx context.Context, s Signal[T]) (R, error) {
	return f(ctx, s)
}
