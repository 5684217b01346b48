//go:build tools

// Package tools pins the kwok command this module builds, so that go.mod and
// go.sum carry every module it needs.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
