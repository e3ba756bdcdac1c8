module github.com/taipattern/taikit/tai/taicel

go 1.26.0

replace github.com/taipattern/taikit => ../..

require (
	cel.dev/cel-go v0.33.2 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	github.com/taipattern/taikit v0.0.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
