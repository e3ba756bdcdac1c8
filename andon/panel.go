package andon

import (
	"fmt"
	"strings"
	"unicode"
)

// A Panel is a table of the program's own on the board, shown under the
// lines and breakers: a service's running jobs, a queue's backlog. Rows is
// called each time the board takes its state (Board.State, every request
// for api/state and every cord pull, for a live page when it opens, and
// for the live pages at every Refresh and Notify, whether or not the state
// changed: once for all the pages waiting then, which share the state),
// on the goroutine serving a request, so it must be quick and must not
// block; call Board.Notify when the rows change so live pages hear of it
// at once rather than at the next refresh.
type Panel struct {
	// Title heads the table; panels are told apart by it.
	Title string
	// Columns are the table's headings.
	Columns []string
	// Rows returns the rows now. A row with fewer cells than Columns is
	// padded with empty ones, one with more is cut.
	Rows func() []PanelRow
	// Empty is shown when there are no rows. Empty means "none".
	Empty string
}

// PanelRow is a row of a Panel.
type PanelRow struct {
	Cells []string `json:"cells"`
	// Color marks the row "red", "amber", "green" or "grey"; anything
	// else is shown plain.
	Color string `json:"color,omitempty"`
	// Link, if set, makes the first cell a link: a path on the same site
	// starting with a single "/" ("/deploy/dpl_…") or an http or https
	// URL, the scheme in any case. Other links ("//host/x", a relative
	// path, another scheme) are dropped, as a rule's runbook is.
	Link string `json:"link,omitempty"`
}

// BoardPanel is a Panel on the board, as /api/state returns it.
type BoardPanel struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    []PanelRow `json:"rows"`
	Empty   string     `json:"empty"`
	// More counts the rows left out beyond the first MaxPanelRows.
	More int `json:"more,omitempty"`
	// Error says the panel's Rows panicked; the board goes on without it.
	Error string `json:"error,omitempty"`
}

// MaxPanelRows is the most rows of a panel the board shows.
const MaxPanelRows = 200

func validatePanels(panels []Panel) error {
	seen := map[string]bool{}
	for i, p := range panels {
		switch {
		case strings.TrimSpace(p.Title) == "":
			return fmt.Errorf("andon: BoardOptions.Panels[%d] has no Title", i)
		case seen[p.Title]:
			return fmt.Errorf("andon: BoardOptions.Panels: two panels titled %q", p.Title)
		case len(p.Columns) == 0:
			return fmt.Errorf("andon: BoardOptions.Panels[%d] (%q) has no Columns", i, p.Title)
		case p.Rows == nil:
			return fmt.Errorf("andon: BoardOptions.Panels[%d] (%q) has no Rows function", i, p.Title)
		}
		seen[p.Title] = true
	}
	return nil
}

// show takes the panel's rows now, shaped for the page.
func (b *Board) show(p Panel) (bp BoardPanel) {
	bp = BoardPanel{Title: p.Title, Columns: p.Columns, Rows: []PanelRow{}, Empty: p.Empty}
	if bp.Empty == "" {
		bp.Empty = "none"
	}
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("andon: board: a panel's Rows panicked", "panel", p.Title, "panic", panicText(v))
			bp.Rows, bp.More, bp.Error = []PanelRow{}, 0, "this panel failed; see the log"
		}
	}()
	rows := p.Rows()
	if len(rows) > MaxPanelRows {
		bp.More = len(rows) - MaxPanelRows
		rows = rows[:MaxPanelRows]
	}
	for _, r := range rows {
		cells := make([]string, len(p.Columns))
		copy(cells, r.Cells)
		row := PanelRow{Cells: cells}
		switch r.Color {
		case "red", "amber", "green", "grey":
			row.Color = r.Color
		}
		row.Link = linkOrNone(r.Link)
		bp.Rows = append(bp.Rows, row)
	}
	return bp
}

// safeLink accepts a path on the same site or an http(s) URL: nothing a
// page could run, and no protocol-relative URL ("//host/x"), which leaves
// the site with the page's scheme. A panel row's link and a rule's
// runbook are held to it alike.
func safeLink(s string) bool {
	// A browser drops tabs and line breaks from a URL ("/\t/evil.example"
	// becomes "//evil.example"): a link holding any control character is
	// not taken.
	if strings.ContainsFunc(s, unicode.IsControl) {
		return false
	}
	if strings.HasPrefix(s, "/") {
		return !strings.HasPrefix(s, "//") && !strings.HasPrefix(s, "/\\")
	}
	// A scheme is case-insensitive: "HTTPS://…" is an https URL.
	scheme, _, ok := strings.Cut(s, "://")
	return ok && (strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "http"))
}

// linkOrNone returns s if safeLink accepts it, and "" if not.
func linkOrNone(s string) string {
	if safeLink(s) {
		return s
	}
	return ""
}
