// This module has no replace directives: "go install" of a module at a
// version refuses one that has them. In a clone, go.work resolves the
// library's modules to the clone. go mod tidy does not read go.work: until
// the release is tagged, tidy with the clone's library replaced in for the
// moment (.ci/consumer-check fails while a replace stays):
//
//	go mod edit -replace github.com/taipattern/taikit=../.. -replace github.com/taipattern/taikit/tai/taicel=../../tai/taicel
//	go mod tidy
//	go mod edit -dropreplace github.com/taipattern/taikit -dropreplace github.com/taipattern/taikit/tai/taicel
module github.com/taipattern/taikit/cmd/taikit

go 1.26.0

require (
	cel.dev/cel-go v0.33.2
	github.com/stretchr/testify v1.12.1
	github.com/taipattern/taikit v0.1.0
	github.com/taipattern/taikit/tai/taicel v0.1.0
	go.uber.org/goleak v1.3.0
)

require (
	cel.dev/expr v0.25.1 // indirect
	github.com/antlr4-go/antlr/v4 v4.13.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/exp v0.0.0-20240823005443-9b4947da3948 // indirect
	golang.org/x/text v0.22.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20240826202546-f6391c0de4c7 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20240826202546-f6391c0de4c7 // indirect
	google.golang.org/protobuf v1.36.10 // indirect
)
