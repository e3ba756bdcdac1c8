package andon

import (
	"context"
	"log/slog"
	"maps"
	"slices"
)

// SlogNotifier returns a Notifier that logs each alert to logger (nil
// means slog.Default()): firing pages at Error level, tickets at Warn, the
// rest and every resolution at Info, with the alert's name, severity,
// state, value, summary and labels.
func SlogNotifier(logger *slog.Logger) Notifier {
	if logger == nil {
		logger = slog.Default()
	}
	return &slogNotifier{log: logger}
}

type slogNotifier struct{ log *slog.Logger }

// Name returns "slog".
func (*slogNotifier) Name() string { return "slog" }

func (n *slogNotifier) Notify(ctx context.Context, alerts []Alert) error {
	for _, a := range alerts {
		level := slog.LevelInfo
		if a.State == Firing {
			switch a.Severity {
			case Page:
				level = slog.LevelError
			case Ticket:
				level = slog.LevelWarn
			}
		}
		labels := make([]any, 0, len(a.Labels))
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			labels = append(labels, slog.String(k, a.Labels[k]))
		}
		n.log.Log(ctx, level, "andon: alert "+a.State.String(),
			slog.String("alertname", a.Name),
			slog.String("severity", string(a.Severity)),
			slog.String("state", a.State.String()),
			slog.String("value", a.ValueText()),
			slog.String("summary", a.Annotations["summary"]),
			slog.Time("since", a.Since()),
			slog.Group("labels", labels...),
		)
	}
	return nil
}
