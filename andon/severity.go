package andon

import "fmt"

// Severity says who must act on an alert and how fast. It is the value of
// the "severity" label of every alert.
type Severity string

// The severities. A Rule must name one; the cord defaults to Page.
const (
	// Page wakes someone up: act now.
	Page Severity = "page"
	// Ticket needs a person within working hours.
	Ticket Severity = "ticket"
	// Info is shown on the board and logged; nobody has to act.
	Info Severity = "info"
)

func (s Severity) validate(field string) error {
	switch s {
	case Page, Ticket, Info:
		return nil
	case "":
		return fmt.Errorf("%s is empty; use andon.Page, andon.Ticket or andon.Info", field)
	}
	return fmt.Errorf("%s %q is not page, ticket or info", field, string(s))
}
