package stack

import "strconv"

// AlertmanagerYAML exposes the Alertmanager configuration Up writes.
func AlertmanagerYAML(cfg *Config) (string, error) {
	return cfg.alertmanagerYAML("127.0.0.1:" + strconv.Itoa(cfg.Ports()["sink"]))
}

// Start starts c as Up does: in its own session, with its PID file.
func Start(cfg *Config, c Component) (int, error) { return cfg.start(c) }
