package stack

import "strconv"

// AlertmanagerYAML exposes the Alertmanager configuration Up writes.
func AlertmanagerYAML(cfg *Config) (string, error) {
	return cfg.alertmanagerYAML("127.0.0.1:" + strconv.Itoa(cfg.Ports()["sink"]))
}
