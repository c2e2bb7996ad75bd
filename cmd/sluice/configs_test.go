package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every shipped example must be a configuration Sluice accepts.
func TestConfigsDirectoryValidates(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "configs", "*.y*ml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "configs/ holds at least the example")
	for _, p := range files {
		_, err := effectiveConfig([]string{"--config", p})
		assert.NoError(t, err, p)
	}
}
