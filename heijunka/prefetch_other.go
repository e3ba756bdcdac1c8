//go:build !(amd64 || arm64) || purego

package heijunka

import "unsafe"

// prefetch does nothing on this platform.
func prefetch(unsafe.Pointer) {}
