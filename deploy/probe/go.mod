module github.com/taipattern/taikit/deploy/probe

go 1.26.0
