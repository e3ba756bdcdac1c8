// Command dashboards writes the services' Grafana dashboards (built by
// check.Dashboards) as JSON files into a directory:
//
//	go run ./cmd/dashboards -dir ../grafana/dashboards
//
// go generate in deploy/check runs it so; make dashboards too.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/taipattern/taikit/deploy/check"
)

func main() {
	dir := flag.String("dir", "", "directory to write the dashboards into (it must exist)")
	flag.Parse()
	if *dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: dashboards -dir DIR")
		os.Exit(2)
	}
	if err := check.WriteDashboards(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "dashboards:", err)
		os.Exit(1)
	}
}
