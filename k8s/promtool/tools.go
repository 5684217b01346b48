//go:build tools

// Package tools pins promtool, which Flotilla's tests check deploy/monitoring's alert rules and
// dashboard queries with, so that go.mod and go.sum carry every module it needs.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
