//go:build tools

// Package tools pins the OCI registry command Flotilla's tests serve Helm charts from, so that
// go.mod and go.sum carry every module it needs.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
)
