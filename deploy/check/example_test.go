package check_test

import (
	"fmt"
	"strings"

	"github.com/taipattern/taikit/deploy/check"
)

func ExampleParseDockerfile() {
	d, err := check.ParseDockerfile("example.Dockerfile", strings.NewReader(`
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN go build -o /out/app \
    ./cmd/app

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range d.Stages {
		fmt.Printf("stage %q from %s\n", st.Name, st.Base)
		for _, in := range st.Instructions {
			fmt.Printf("  line %d %s %q exec=%v\n", in.Line, in.Cmd, in.Args, in.Exec)
		}
	}
	// Output:
	// stage "build" from golang:1.26
	//   line 3 WORKDIR ["/src"] exec=false
	//   line 4 COPY ["." "."] exec=false
	//   line 5 RUN ["go build -o /out/app      ./cmd/app"] exec=false
	// stage "" from gcr.io/distroless/static-debian12:nonroot
	//   line 9 COPY ["/out/app" "/app"] exec=false
	//   line 10 USER ["65532:65532"] exec=false
	//   line 11 ENTRYPOINT ["/app"] exec=true
}

func ExampleDecodeManifests() {
	_, err := check.DecodeManifests(strings.NewReader(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  replicaz: 3
`))
	fmt.Println(err)
	// Output:
	// document 1: strict decoding error: unknown field "spec.replicaz"
}

func ExampleDashboards() {
	ds, err := check.Dashboards()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range ds {
		b, err := d.Marshal()
		if err != nil {
			fmt.Println(err)
			return
		}
		qs, err := check.DashboardQueries(b)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s (%s): %d queries, the first of %q:\n  %s\n", d.File, *d.Model.Uid, len(qs), qs[0].Panel, qs[0].Expr)
	}
	// Output:
	// payment.json (taikit-payment): 12 queries, the first of "Transactions by status":
	//   sum by (status) (rate(payment_transaction_total[$__rate_interval]))
	// deployment.json (taikit-deployment): 9 queries, the first of "Active rollouts":
	//   sum(deployment_active)
	// tai.json (taikit-tai): 5 queries, the first of "Outcomes by pipeline":
	//   sum by (kind, outcome) (rate(taikit_signals_total[$__rate_interval]))
}
