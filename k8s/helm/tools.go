//go:build tools

// Package tools pins the helm command Flotilla renders charts with, so that go.mod and go.sum
// carry every module it needs.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
